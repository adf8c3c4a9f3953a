import { taskId } from '../model/ids.ts';
import type { Build, Task } from '../model/types.ts';
import type { PlannedUnit } from '../model/shard-plan.ts';

/** The step name of a whole-build task (one task runs all of a builder's steps). */
export const buildStep = 'build';

/** A fresh pending task for the given step and attempt of a build; shard and retry tasks name their units. */
export function newTask(build: Build, step: string, attempt: number, now: number, units?: PlannedUnit[]): Task {
  return {
    id: taskId(build.id, step, attempt),
    buildId: build.id,
    repo: build.repo,
    commit: build.commit,
    builder: build.builder,
    step,
    attempt,
    status: 'pending',
    createdAt: now,
    ...(build.mode === undefined ? {} : { mode: build.mode }),
    ...(units === undefined ? {} : { units }),
  };
}
