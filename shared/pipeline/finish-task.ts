import { PermanentError } from '../errors.ts';
import type { TaskResult } from '../model/wire.ts';
import { terminalTaskStatuses, type Build, type BuildStatus, type Task } from '../model/types.ts';
import { collections } from '../ports/state.ts';
import type { PipelineDeps } from './deps.ts';
import { publishFollowUp } from './follow-up.ts';
import { newTask } from './plan.ts';

/** How a task attempt ended. `lost`: no usable result; retried while the builder allows. */
export interface TaskOutcome {
  status: 'passed' | 'failed' | 'timed-out' | 'lost';
  reason?: string;
  result?: TaskResult;
  /** For `lost`: another attempt would fare no better (a host type this runtime lacks), so the build ends now. */
  final?: boolean;
}

/**
 * Records a task's outcome and moves its build on, in one transaction: a verdict, or a fresh attempt when the worker
 * was lost and attempts remain. A task already finished is left as it was (duplicates change nothing); an outcome of
 * an attempt that is no longer the build's current one is recorded on the task but does not touch the build.
 * Throws PermanentError for an unknown task.
 */
export async function finishTask(
  deps: Pick<PipelineDeps, 'catalog' | 'state' | 'publisher' | 'logger' | 'now'>,
  taskId: string,
  outcome: TaskOutcome,
): Promise<Build | undefined> {
  const change = await deps.state.transaction(async (tx) => {
    const task = await tx.get(collections.tasks, taskId);
    if (task === undefined) throw new PermanentError(`task ${taskId} does not exist`);
    const build = await tx.get(collections.builds, task.buildId);
    if (build === undefined) throw new PermanentError(`build ${task.buildId} of task ${taskId} does not exist`);
    if (terminalTaskStatuses.includes(task.status)) return { build, task, changed: false, retry: undefined };
    const now = deps.now();
    const finished: Task = { ...task, status: outcome.status, finishedAt: now, ...resultFields(outcome) };
    tx.set(collections.tasks, task.id, finished);
    if (build.taskId !== task.id) return { build, task: finished, changed: true, retry: undefined };
    const maxAttempts = deps.catalog.builders.get(build.builder)?.maxAttempts ?? 1;
    if (outcome.status === 'lost' && outcome.final !== true && task.attempt < maxAttempts) {
      const retry = newTask(build, task.attempt + 1, now);
      tx.set(collections.tasks, retry.id, retry);
      const next: Build = { ...build, taskId: retry.id, attempts: build.attempts + 1 };
      tx.set(collections.builds, build.id, next);
      return { build: next, task: finished, changed: true, retry };
    }
    const verdict: Build = {
      ...build,
      status: verdictOf(outcome.status),
      finishedAt: now,
      ...(outcome.status === 'passed' ? {} : { reason: reasonOf(outcome, task, maxAttempts) }),
    };
    tx.set(collections.builds, build.id, verdict);
    return { build: verdict, task: finished, changed: true, retry: undefined };
  });
  if (change.changed) {
    const { task, build, retry } = change;
    const fields = { task: task.id, build: build.id, repo: build.repo, commit: build.commit, builder: build.builder };
    if (retry !== undefined) {
      deps.logger.warn('task.retry', { ...fields, attempt: retry.attempt, reason: task.reason });
    } else {
      deps.logger.info('task.finished', { ...fields, status: task.status, reason: task.reason });
    }
  }
  await publishFollowUp(deps, change.build);
  return change.build;
}

function verdictOf(status: TaskOutcome['status']): BuildStatus {
  switch (status) {
    case 'passed':
      return 'passed';
    case 'failed':
    case 'timed-out':
      return 'failed';
    case 'lost':
      return 'infra-failure';
  }
}

function reasonOf(outcome: TaskOutcome, task: Task, maxAttempts: number): string {
  if (outcome.status === 'lost' && outcome.final === true) return outcome.reason ?? 'lost';
  if (outcome.status === 'lost') {
    const tries = maxAttempts === 1 ? 'once' : `${task.attempt} times`;
    return `worker lost ${tries}; last: ${outcome.reason ?? 'no reason given'}`;
  }
  return outcome.reason ?? outcome.status;
}

function resultFields(outcome: TaskOutcome): Partial<Task> {
  const result = outcome.result;
  return {
    ...(outcome.reason === undefined ? {} : { reason: outcome.reason }),
    ...(result === undefined
      ? {}
      : {
          startedAt: result.startedAt,
          workerFinishedAt: result.finishedAt,
          steps: result.steps.map((step) => ({
            name: step.name,
            exitCode: step.exitCode,
            durationMs: step.durationMs,
            ...(step.signal === undefined ? {} : { signal: step.signal }),
          })),
          logBytes: result.log.bytes,
          logTruncated: result.log.truncated,
        }),
  };
}
