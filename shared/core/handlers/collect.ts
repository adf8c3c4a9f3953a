import { describeDiskSpace } from '../disk-space.ts';
import { describeError, PermanentError } from '../errors.ts';
import type { TaskFinished } from '../model/messages.ts';
import { validate } from '../model/messages.ts';
import { terminalBuildStatuses, terminalTaskStatuses, type Task } from '../model/types.ts';
import type { ListedUnit } from '../sharding/test-suites.ts';
import { blobKeys, TaskResult } from '../model/wire.ts';
import { collections } from '../../ports/state.ts';
import type { PipelineDeps } from '../pipeline/deps.ts';
import { finishTask, type TaskOutcome } from '../pipeline/finish-task.ts';
import { publishFollowUp } from '../pipeline/follow-up.ts';
import { modulesStep } from '../pipeline/go-modules.ts';
import { missingToolsReason } from '../pipeline/missing-tools.ts';
import { keepListing, makeStep, plannedFields, planTests } from '../pipeline/sharded-build.ts';

/**
 * The `collect` function: reads a finished task's result object, validates it, and records the task's outcome and
 * what it means for its build: a verdict, a new attempt, the shards a make task's listing calls for. A worker that ended without a valid result is `lost`; one killed at its
 * deadline is `timed-out`. A duplicate or late message for a finished task only re-publishes the follow-up.
 * Throws PermanentError for an unknown task.
 */
export function createCollect(deps: PipelineDeps) {
  return async function collect(message: TaskFinished): Promise<void> {
    const task = await deps.state.get(collections.tasks, message.taskId);
    if (task === undefined) throw new PermanentError(`task ${message.taskId} does not exist`);
    if (terminalTaskStatuses.includes(task.status)) {
      const build = await deps.state.get(collections.builds, task.buildId);
      if (build !== undefined) await publishFollowUp(deps, build);
      return;
    }
    const outcome = await outcomeOf(task, message);
    if (outcome === undefined) return;
    const build = await finishTask(deps, task.id, await withWhatItMade(task, outcome));
    // The result is in: the worker has nothing left to do, and a VM costs money until it is gone.
    if (message.cause === 'result') await deps.compute.stop(task.id);
    if (build?.sharding !== undefined && terminalBuildStatuses.includes(build.status)) await stopTheRest(build.id);
  };

  /** A make task's outcome with its tests planned; a module fetch's, checked to have left its module cache. */
  async function withWhatItMade(task: Task, outcome: TaskOutcome): Promise<TaskOutcome> {
    if (task.step === makeStep) return withPlannedTests(task, outcome);
    if (task.step !== modulesStep || outcome.status !== 'passed') return outcome;
    const build = await deps.state.get(collections.builds, task.buildId);
    const key = build?.modules?.key;
    if (key !== undefined && (await deps.blobs.exists(blobKeys.modules(key)))) return outcome;
    return { ...outcome, status: 'lost', reason: 'the module fetch passed but its module cache is not in the blob store' };
  }

  /**
   * A make task that passed leaves a snapshot and a unit listing: the listing is kept beside the snapshot and
   * planned into shards. Output that is not a listing fails the build, saying why; a snapshot that did not land is
   * a lost worker.
   */
  async function withPlannedTests(task: Task, outcome: TaskOutcome): Promise<TaskOutcome> {
    const build = await deps.state.get(collections.builds, task.buildId);
    const suite = deps.catalog.builders.get(task.builder)?.tests;
    if (outcome.status !== 'passed' || build?.sharding === undefined || suite === undefined) return outcome;
    const key = build.sharding.snapshotKey;
    if (!(await deps.blobs.exists(blobKeys.snapshot(key)))) return { ...outcome, status: 'lost', reason: 'the make worker passed but its snapshot is not in the blob store' };
    let listed: ListedUnit[];
    try {
      listed = await keepListing(deps.blobs, suite, key, outcome.result?.output ?? '');
    } catch (error) {
      return { ...outcome, status: 'failed', reason: `cannot read the unit listing: ${describeError(error)}` };
    }
    const tests = await planTests(deps, build, suite, listed);
    deps.logger.info('tests.planned', plannedFields(build, tests, 'made'));
    return { ...outcome, tests };
  }

  /** Once a sharded build has its verdict (a shard lost for good), its other workers are only costing money. */
  async function stopTheRest(buildId: string): Promise<void> {
    const running = await deps.state.query(collections.tasks, { where: { buildId, status: 'launched' } });
    for (const other of running) await deps.compute.stop(other.id);
  }

  async function outcomeOf(task: Task, message: TaskFinished): Promise<TaskOutcome | undefined> {
    const bytes = await deps.blobs.get(blobKeys.result(task.id));
    if (bytes !== undefined) return outcomeOfResult(task, bytes);
    if (message.cause === 'result') return undefined; // a stale notice; the worker's exit will follow
    const exit = message.exit;
    if (exit?.reason === 'deadline') {
      const seconds = task.deadline !== undefined && task.launchedAt !== undefined ? (task.deadline - task.launchedAt) / 1000 : undefined;
      return { status: 'timed-out', reason: `killed at its deadline${seconds === undefined ? '' : ` (${seconds}s)`}` };
    }
    if (exit?.reason === 'vanished') return { status: 'lost', reason: 'the worker vanished without a result' };
    const how = exit?.signal ? `killed by ${exit.signal}` : `exited with code ${exit?.code ?? 'unknown'}`;
    return { status: 'lost', reason: `the worker ${how} without a result${exit?.note === undefined ? '' : `: ${exit.note}`}` };
  }

  function outcomeOfResult(task: Task, bytes: Uint8Array): TaskOutcome {
    let result: TaskResult;
    try {
      result = validate(TaskResult, JSON.parse(Buffer.from(bytes).toString('utf8')), 'result');
      if (result.taskId !== task.id) throw new Error(`result names task ${result.taskId}, expected ${task.id}`);
    } catch (error) {
      const reason = `malformed result: ${describeError(error)}`;
      deps.logger.error('task.malformed-result', { task: task.id, reason });
      return { status: 'lost', reason };
    }
    // A full disk is the machine's fault too. Unlike a missing program it may pass: the space a worker finds depends on
    // what else shares its disk at the time, and a fresh worker starts with an empty directory. So it is retried.
    const full = result.steps.find((step) => step.diskFull !== undefined);
    if (full?.diskFull !== undefined) {
      const how = full.signal === undefined ? `exited ${full.exitCode ?? '?'}` : `was killed by ${full.signal}`;
      return { status: 'lost', reason: `${full.name} ${how} with the worker's disk full: ${describeDiskSpace(full.diskFull)}`, result };
    }
    // A program the worker did not have is the machine's fault: no other attempt on the same environment fares better.
    const notFound = result.steps.find((step) => step.exitCode === 127);
    if (notFound !== undefined) {
      const reason = `${notFound.name} exited 127: ${missingToolsReason(notFound.missing === undefined ? [] : [notFound.missing], task.hostType ?? 'unknown')}`;
      return { status: 'lost', final: true, reason, result };
    }
    // The module proxy out of reach is the machine's failure, and may pass on another worker.
    const unreachable = result.steps.find((step) => step.exitCode !== 0 && step.finding?.blame === 'environment');
    if (unreachable?.finding !== undefined) return { status: 'lost', reason: `${unreachable.name}: ${unreachable.finding.text}`, result };
    switch (result.status) {
      case 'passed':
        return { status: 'passed', result };
      case 'failed': {
        const failed = result.steps.find((step) => step.exitCode !== 0);
        const how = failed?.signal ? `was killed by ${failed.signal}` : `exited ${failed?.exitCode ?? '?'}`;
        // No step failed: the tree was over a size limit, which the agent names.
        const finding = failed?.finding === undefined ? '' : `: ${failed.finding.text}`;
        return { status: 'failed', reason: failed ? `${failed.name} ${how}${finding}` : (result.error ?? 'a step failed'), result };
      }
      case 'timed-out':
        return { status: 'timed-out', reason: 'timed out before its deadline', result };
      case 'error':
        return { status: 'lost', reason: `agent error: ${result.error ?? 'unknown'}`, result };
    }
  }
}
