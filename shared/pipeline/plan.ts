import { PermanentError } from '../errors.ts';
import { taskId } from '../model/ids.ts';
import type { BuildRequested } from '../model/messages.ts';
import type { Build, Task } from '../model/types.ts';
import { collections } from '../ports/state.ts';
import type { PipelineDeps } from './deps.ts';
import { publishFollowUp } from './follow-up.ts';

/** The step name of a whole-build task (one task runs all of a builder's steps). */
export const buildStep = 'build';

/**
 * The `plan` function: turns a requested build into its first task. A build that already has a task is left as it
 * is (a duplicate request); a build whose builder is no longer configured becomes an infra failure with that reason.
 * Throws PermanentError for a build that does not exist.
 */
export function createPlan(deps: Pick<PipelineDeps, 'catalog' | 'state' | 'publisher' | 'logger' | 'now'>) {
  return async function plan(message: BuildRequested): Promise<void> {
    const build = await deps.state.transaction(async (tx) => {
      const build = await tx.get(collections.builds, message.buildId);
      if (build === undefined) throw new PermanentError(`build ${message.buildId} does not exist`);
      if (build.status !== 'queued' || build.taskId !== undefined) return build;
      if (!deps.catalog.builders.has(build.builder)) {
        const failed = unplannable(build, `builder "${build.builder}" is not configured`, deps.now());
        tx.set(collections.builds, build.id, failed);
        return failed;
      }
      const task = newTask(build, 1, deps.now());
      tx.set(collections.tasks, task.id, task);
      const planned: Build = { ...build, taskId: task.id, attempts: 1 };
      tx.set(collections.builds, build.id, planned);
      return planned;
    });
    await publishFollowUp(deps, build);
  };
}

/**
 * Ends a build that could not be planned as an infra failure with the reason, unless it was planned meanwhile.
 * For the last delivery of a `build-requested` message whose handling kept failing.
 */
export async function abandonPlan(
  deps: Pick<PipelineDeps, 'state' | 'publisher' | 'now'>,
  buildId: string,
  reason: string,
): Promise<void> {
  const build = await deps.state.transaction(async (tx) => {
    const build = await tx.get(collections.builds, buildId);
    if (build === undefined || build.status !== 'queued' || build.taskId !== undefined) return build;
    const failed = unplannable(build, `could not plan: ${reason}`, deps.now());
    tx.set(collections.builds, build.id, failed);
    return failed;
  });
  if (build !== undefined) await publishFollowUp(deps, build);
}

function unplannable(build: Build, reason: string, now: number): Build {
  return { ...build, status: 'infra-failure', reason, finishedAt: now };
}

/** A fresh pending task for the given attempt of a build. */
export function newTask(build: Build, attempt: number, now: number): Task {
  return {
    id: taskId(build.id, buildStep, attempt),
    buildId: build.id,
    repo: build.repo,
    commit: build.commit,
    builder: build.builder,
    step: buildStep,
    attempt,
    status: 'pending',
    createdAt: now,
  };
}
