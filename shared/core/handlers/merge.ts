import { PermanentError } from '../errors.ts';
import type { TestsFinished } from '../model/messages.ts';
import { terminalBuildStatuses, terminalTaskStatuses, type Build, type Task } from '../model/types.ts';
import { blobKeys } from '../model/wire.ts';
import type { PlannedUnit } from '../model/shard-plan.ts';
import { collections } from '../../ports/state.ts';
import { buildFields } from '../pipeline/log-fields.ts';
import type { PipelineDeps } from '../pipeline/deps.ts';
import { learnFromBuild } from '../pipeline/durations.ts';
import { publishFollowUp } from '../pipeline/follow-up.ts';
import { buildVerdict, composeMergedLog, failedByShard, observedSeconds, testSummary, unitVerdicts } from '../pipeline/merged-run.ts';
import { newTask } from '../pipeline/new-task.ts';
import { retryStepOf } from '../pipeline/sharded-build.ts';
import { logOf } from '../pipeline/task-log.ts';

/**
 * The `merge` function, run when every shard (or retry) task of a sharded build is in. After the shards, the units
 * that failed go to retry tasks on fresh workers, one per shard that had failures; after those (or when nothing
 * failed, or the builder does not retry), the build gets its verdict: the merged log is written, the builder's
 * learned durations are updated, and the verdict is set, each of these once however often, late or early the
 * message arrives. A message for a build whose current tasks are not all in is stale and does nothing.
 * Throws PermanentError for an unknown build.
 */
export function createMerge(deps: PipelineDeps) {
  return async function merge(message: TestsFinished): Promise<void> {
    const build = await deps.state.get(collections.builds, message.buildId);
    if (build === undefined) throw new PermanentError(`build ${message.buildId} does not exist`);
    const sharding = build.sharding;
    const phase = sharding?.phase;
    if (sharding === undefined || terminalBuildStatuses.includes(build.status) || (phase !== 'test' && phase !== 'retry')) {
      await publishFollowUp(deps, build);
      return;
    }
    const shards = await tasks(sharding.shardTaskIds ?? []);
    const retries = phase === 'retry' ? await tasks(sharding.retryTaskIds ?? []) : [];
    if (!(phase === 'test' ? shards : retries).every((task) => terminalTaskStatuses.includes(task.status))) return;
    const suite = deps.catalog.builders.get(build.builder)?.tests;
    if (suite === undefined) {
      await settle(build, (current) => ({ ...current, status: 'infra-failure', reason: `builder "${build.builder}" is no longer a sharded builder`, finishedAt: deps.now() }));
      return;
    }
    const verdicts = unitVerdicts(sharding.units ?? [], shards, retries);
    const failed = failedByShard(verdicts);
    if (phase === 'test' && suite.retryFailed && failed.size > 0) {
      await startRetries(build, failed);
      return;
    }

    const make = sharding.makeTaskId === undefined ? undefined : await deps.state.get(collections.tasks, sharding.makeTaskId);
    const summary = testSummary({
      verdicts,
      shards,
      retries,
      make,
      testsStartedAt: sharding.testsStartedAt ?? build.createdAt,
      estimatedMakespanSeconds: sharding.plan?.makespan ?? 0,
    });
    const { status, reason } = buildVerdict(verdicts);
    const logs = new Map<string, Buffer>();
    for (const task of [...shards, ...retries]) {
      const log = await logOf(deps.blobs, task.id);
      if (log !== undefined) logs.set(task.id, log.text);
    }
    const text = composeMergedLog({
      build,
      kind: suite.kind,
      verdicts,
      summary,
      shards: shards.length,
      snapshotReused: sharding.snapshotReused === true,
      logs,
      logUrl: (taskId) => `${deps.options.dashboardUrl}/log/${taskId}`,
      verdict: status,
    });
    await deps.blobs.put(blobKeys.mergedLog(build.id), text);
    await learnFromBuild(deps, build.builder, build.id, observedSeconds(verdicts));
    const merged = await settle(build, (current) => ({
      ...current,
      status,
      ...(reason === undefined ? {} : { reason }),
      finishedAt: deps.now(),
      sharding: { ...sharding, phase: 'merged', summary },
    }));
    if (merged) {
      deps.logger.info('tests.merged', {
        ...buildFields(build),
        status,
        units: summary.units,
        failed: summary.failed,
        flaky: summary.flaky,
        wallMs: summary.wallMs,
        aggregateMs: summary.aggregateMs,
      });
    }
  };

  async function tasks(ids: readonly string[]): Promise<Task[]> {
    const found = await Promise.all(ids.map((id) => deps.state.get(collections.tasks, id)));
    return found.filter((task) => task !== undefined);
  }

  /**
   * Applies `change` to the build, and writes `newTasks`, if the build is still in the phase this merge read; then
   * publishes what follows from the stored build. Returns whether this call made the change.
   */
  async function settle(read: Build, change: (current: Build) => Build, newTasks: readonly Task[] = []): Promise<boolean> {
    const outcome = await deps.state.transaction(async (tx) => {
      const current = await tx.get(collections.builds, read.id);
      if (current === undefined) throw new PermanentError(`build ${read.id} does not exist`);
      if (terminalBuildStatuses.includes(current.status) || current.sharding?.phase !== read.sharding?.phase) return { build: current, changed: false };
      const next = change(current);
      for (const task of newTasks) tx.set(collections.tasks, task.id, task);
      tx.set(collections.builds, current.id, next);
      return { build: next, changed: true };
    });
    await publishFollowUp(deps, outcome.build);
    return outcome.changed;
  }

  async function startRetries(build: Build, failed: ReadonlyMap<Task, PlannedUnit[]>): Promise<void> {
    const now = deps.now();
    const retries = [...failed].map(([shard, units]) => newTask(build, retryStepOf(shard.step), 1, now, units));
    const started = await settle(
      build,
      (current) => ({
        ...current,
        attempts: current.attempts + retries.length,
        ...(current.sharding === undefined ? {} : { sharding: { ...current.sharding, phase: 'retry', retryTaskIds: retries.map((task) => task.id) } }),
      }),
      retries,
    );
    if (started) {
      deps.logger.warn('tests.retry', {
        ...buildFields(build),
        units: [...failed.values()].reduce((count, units) => count + units.length, 0),
        tasks: retries.length,
      });
    }
  }
}

/**
 * Ends a sharded build that could not be merged as an infra failure with the reason, unless it has its verdict. For
 * the last delivery of a `tests-finished` message whose handling kept failing.
 */
export async function abandonMerge(deps: Pick<PipelineDeps, 'state' | 'publisher' | 'now'>, buildId: string, reason: string): Promise<void> {
  const build = await deps.state.transaction(async (tx) => {
    const build = await tx.get(collections.builds, buildId);
    if (build === undefined || terminalBuildStatuses.includes(build.status)) return build;
    const failed: Build = { ...build, status: 'infra-failure', reason: `could not merge: ${reason}`, finishedAt: deps.now() };
    tx.set(collections.builds, build.id, failed);
    return failed;
  });
  if (build !== undefined) await publishFollowUp(deps, build);
}
