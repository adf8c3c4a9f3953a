import { taskCost } from '../cost/prices.ts';
import { PermanentError } from '../errors.ts';
import type { TaskResult } from '../model/wire.ts';
import {
  terminalBuildStatuses,
  terminalTaskStatuses,
  type Build,
  type BuildStatus,
  type Sharding,
  type Task,
  type UnitResult,
} from '../model/types.ts';
import type { PlannedUnit } from '../model/shard-plan.ts';
import { collections } from '../../ports/state.ts';
import { buildFields } from './log-fields.ts';
import type { PipelineDeps } from './deps.ts';
import { publishFollowUp } from './follow-up.ts';
import { modulesStep } from './go-modules.ts';
import { newTask } from './new-task.ts';
import { currentTaskIds, enterTests, makeStep, type PlannedTests } from './sharded-build.ts';

/** How a task attempt ended. `lost`: no usable result; retried while the builder allows. */
export interface TaskOutcome {
  status: 'passed' | 'failed' | 'timed-out' | 'lost';
  reason?: string;
  result?: TaskResult;
  /** For `lost`: another attempt would fare no better (a host type this runtime lacks), so the build ends now. */
  final?: boolean;
  /** For a make task that passed: its units, planned into shards. */
  tests?: PlannedTests;
}

type Change = { build: Build; task: Task; changed: boolean; retry: Task | undefined };

/**
 * Records a task's outcome and moves its build on, in one transaction. A whole build gets its verdict, or a fresh
 * attempt when the worker was lost and attempts remain. A sharded build's make task moves it to its shards (or ends
 * it); a shard or retry task is recorded with its units' results, and the build waits for the merge. A task already
 * finished is left as it was (duplicates change nothing); the outcome of an attempt that is no longer current, or of
 * a task of a build that has its verdict, is recorded on the task but does not touch the build.
 * Throws PermanentError for an unknown task.
 */
export async function finishTask(
  deps: Pick<PipelineDeps, 'catalog' | 'state' | 'publisher' | 'logger' | 'now'>,
  taskId: string,
  outcome: TaskOutcome,
): Promise<Build | undefined> {
  const change = await deps.state.transaction(async (tx): Promise<Change> => {
    const task = await tx.get(collections.tasks, taskId);
    if (task === undefined) throw new PermanentError(`task ${taskId} does not exist`);
    const stored = await tx.get(collections.builds, task.buildId);
    if (stored === undefined) throw new PermanentError(`build ${task.buildId} of task ${taskId} does not exist`);
    if (terminalTaskStatuses.includes(task.status)) return { build: stored, task, changed: false, retry: undefined };
    const now = deps.now();
    const finished: Task = { ...task, status: outcome.status, finishedAt: now, ...resultFields(task, outcome), ...costFields(task, now) };
    tx.set(collections.tasks, task.id, finished);
    // Every attempt's worker cost money, current or not: its cost joins the build's once, as the task finishes. A
    // worker that cost nothing (this machine) leaves the build as it was, so the embedded runtime writes no more.
    const cost = finished.costUsd ?? 0;
    const build: Build = cost === 0 ? stored : { ...stored, costUsd: (stored.costUsd ?? 0) + cost };
    const current = build.sharding === undefined ? build.taskId === task.id : currentTaskIds(build.sharding).includes(task.id);
    if (!current || terminalBuildStatuses.includes(build.status)) {
      if (build !== stored) tx.set(collections.builds, build.id, build);
      return { build, task: finished, changed: true, retry: undefined };
    }
    const maxAttempts = deps.catalog.builders.get(build.builder)?.maxAttempts ?? 1;
    if (outcome.status === 'lost' && outcome.final !== true && task.attempt < maxAttempts) {
      const retry = newTask(build, task.step, task.attempt + 1, now, task.units);
      tx.set(collections.tasks, retry.id, retry);
      const next: Build = {
        ...build,
        attempts: build.attempts + 1,
        ...(build.sharding === undefined ? { taskId: retry.id } : { sharding: replaceTask(build.sharding, task.id, retry.id) }),
      };
      tx.set(collections.builds, build.id, next);
      return { build: next, task: finished, changed: true, retry };
    }
    const next = nextBuild(build, task, outcome, maxAttempts, now);
    if (next !== stored) tx.set(collections.builds, build.id, next);
    for (const shard of build.sharding?.phase === 'make' && next.sharding?.phase === 'test' ? (outcome.tests?.tasks ?? []) : []) {
      tx.set(collections.tasks, shard.id, shard);
    }
    return { build: next, task: finished, changed: true, retry: undefined };
  });
  if (change.changed) {
    const { task, build, retry } = change;
    const fields = { task: task.id, ...buildFields(build), step: task.step };
    if (retry !== undefined) {
      deps.logger.warn('task.retry', { ...fields, attempt: retry.attempt, reason: task.reason });
    } else {
      deps.logger.info('task.finished', { ...fields, status: task.status, reason: task.reason });
    }
  }
  await publishFollowUp(deps, change.build);
  return change.build;
}

/** Where a task's outcome leaves its build, when the task is current and not retried. */
function nextBuild(build: Build, task: Task, outcome: TaskOutcome, maxAttempts: number, now: number): Build {
  const sharding = build.sharding;
  const verdict = (status: BuildStatus, reason: string | undefined): Build => ({
    ...build,
    status,
    finishedAt: now,
    ...(reason === undefined ? {} : { reason }),
  });
  if (task.step === modulesStep) return afterModules(build, outcome, verdict(verdictOf(outcome.status), `modules: ${reasonOf(outcome, task, maxAttempts)}`));
  if (sharding === undefined) {
    return verdict(verdictOf(outcome.status), outcome.status === 'passed' ? undefined : reasonOf(outcome, task, maxAttempts));
  }
  // A shard's worker lost for good leaves units with no verdict: the build cannot be trusted to pass or fail.
  if (outcome.status === 'lost') return verdict('infra-failure', `${task.step}: ${reasonOf(outcome, task, maxAttempts)}`);
  if (task.step !== makeStep) return build;
  if (outcome.status !== 'passed') return verdict('failed', `make: ${reasonOf(outcome, task, maxAttempts)}`);
  if (build.mode?.kind === 'make') return { ...verdict('passed', 'make only: no tests were run'), sharding: { ...sharding, phase: 'merged' } };
  if (outcome.tests === undefined) return verdict('infra-failure', 'make: passed, but its units were not planned');
  return enterTests(build, sharding, outcome.tests, now);
}

/**
 * A build whose module fetch ended: with its modules ready it has no task until it is planned again; otherwise it
 * ends as `failed`, the fetch's verdict on the commit's go.sum, or an infra failure.
 */
function afterModules(build: Build, outcome: TaskOutcome, ended: Build): Build {
  if (outcome.status !== 'passed' || build.modules === undefined) return ended;
  const { taskId: _fetchTask, ...rest } = build;
  return { ...rest, modules: { ...build.modules, phase: 'ready' } };
}

function replaceTask(sharding: Sharding, from: string, to: string): Sharding {
  const swap = (ids: string[] | undefined) => ids?.map((id) => (id === from ? to : id));
  if (sharding.makeTaskId === from) return { ...sharding, makeTaskId: to };
  const shardTaskIds = swap(sharding.shardTaskIds);
  const retryTaskIds = swap(sharding.retryTaskIds);
  return {
    ...sharding,
    ...(shardTaskIds === undefined ? {} : { shardTaskIds }),
    ...(retryTaskIds === undefined ? {} : { retryTaskIds }),
  };
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

/**
 * What the task's worker cost, from launch until now (Compute Engine bills the VM from its start until it is gone).
 * A worker on this machine, or a task that never launched, costs 0; an unpriced machine type gets no cost at all.
 */
function costFields(task: Task, now: number): Pick<Task, 'costUsd'> {
  if (task.machine === undefined || task.launchedAt === undefined) return { costUsd: 0 };
  const { type, spot, ...disk } = task.machine;
  const cost = taskCost(type, spot, (now - task.launchedAt) / 1000, disk);
  return cost === undefined ? {} : { costUsd: cost };
}

function resultFields(task: Task, outcome: TaskOutcome): Partial<Task> {
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
          ...(result.snapshot === undefined ? {} : { snapshot: result.snapshot }),
          ...(result.source === undefined ? {} : { sourceSeconds: result.source.seconds }),
          ...(task.units === undefined ? {} : { unitResults: unitResultsOf(task.units, result) }),
        }),
  };
}

/**
 * How each unit of a shard ended: unit i is step i of the worker's result. A unit with no step ran out of time
 * before it started; the step a timed-out task stopped in timed out.
 */
export function unitResultsOf(units: readonly PlannedUnit[], result: TaskResult): UnitResult[] {
  return units.map((unit, index) => {
    const step = result.steps[index];
    if (step === undefined || step.name !== unit.name) return { name: unit.name, status: 'not-run', durationMs: 0, exitCode: null };
    const stopped = result.status === 'timed-out' && index === result.steps.length - 1 && step.exitCode !== 0;
    return {
      name: unit.name,
      status: step.exitCode === 0 ? 'passed' : stopped ? 'timed-out' : 'failed',
      durationMs: step.durationMs,
      exitCode: step.exitCode,
      ...(step.log === undefined ? {} : { log: step.log }),
    };
  });
}
