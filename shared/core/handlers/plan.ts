import { PermanentError } from '../errors.ts';
import type { BuildRequested } from '../model/messages.ts';
import { terminalBuildStatuses, type Build, type Builder, type GoModules, type TestSuite } from '../model/types.ts';
import { blobKeys } from '../model/wire.ts';
import { collections } from '../../ports/state.ts';
import type { PipelineDeps } from '../pipeline/deps.ts';
import { publishFollowUp } from '../pipeline/follow-up.ts';
import { moduleFilesOf, moduleNeedsOf, modulesStep } from '../pipeline/go-modules.ts';
import { buildFields } from '../pipeline/log-fields.ts';
import { createSourceTarballs } from '../pipeline/source-tarball.ts';
import { buildStep, newTask } from '../pipeline/new-task.ts';
import { enterTests, hostTypeFor, makeStep, plannedFields, planTests, readListing, snapshotKeyFor, type PlannedTests } from '../pipeline/sharded-build.ts';

/**
 * The `plan` function: turns a requested build into its first task. A whole build gets one task. A sharded build
 * gets a make task, or, when an earlier build made a snapshot of the same tree the same way, goes straight to its
 * shards. A go-module build whose tree requires modules not yet in the blob store first gets a module-fetch task;
 * when that passes, the build is requested again and planned as above. A build that is already planned is left as it
 * is (a duplicate request); a build whose builder is no longer configured becomes an infra failure with that reason.
 * Throws PermanentError for a build that does not exist.
 */
export function createPlan(deps: Pick<PipelineDeps, 'catalog' | 'state' | 'publisher' | 'blobs' | 'compute' | 'source' | 'logger' | 'now'>) {
  const sources = createSourceTarballs(deps);

  return async function plan(message: BuildRequested): Promise<void> {
    const requested = await deps.state.get(collections.builds, message.buildId);
    if (requested === undefined) throw new PermanentError(`build ${message.buildId} does not exist`);
    const builder = deps.catalog.builders.get(requested.builder);
    const reuse = builder?.tests === undefined || !isUnplanned(requested) ? undefined : await reusedSnapshot(requested, builder, builder.tests);
    // A reused snapshot already holds the module cache its make task had.
    const modules = reuse === undefined && builder?.modules !== undefined && isUnplanned(requested) && requested.modules === undefined
      ? await moduleCacheFor(requested, builder, builder.modules)
      : undefined;
    // Set by the transaction that planned from a reused snapshot (the last run of it, if it was retried).
    let reused: PlannedTests | undefined;
    const build = await deps.state.transaction(async (tx) => {
      reused = undefined;
      const stored = await tx.get(collections.builds, message.buildId);
      if (stored === undefined) throw new PermanentError(`build ${message.buildId} does not exist`);
      if (!isUnplanned(stored)) return stored;
      const now = deps.now();
      if (builder === undefined) {
        const failed = unplannable(stored, `builder "${stored.builder}" is not configured`, now);
        tx.set(collections.builds, stored.id, failed);
        return failed;
      }
      let build = stored;
      if (modules !== undefined && build.modules === undefined) {
        if (!modules.ready) {
          const task = newTask(build, modulesStep, 1, now);
          tx.set(collections.tasks, task.id, task);
          const fetching: Build = { ...build, taskId: task.id, attempts: build.attempts + 1, modules: { key: modules.key, phase: 'fetch' } };
          tx.set(collections.builds, build.id, fetching);
          return fetching;
        }
        build = { ...build, modules: { key: modules.key, phase: 'ready', reused: true } };
      }
      if (builder.tests === undefined) {
        const task = newTask(build, buildStep, 1, now);
        tx.set(collections.tasks, task.id, task);
        const planned: Build = { ...build, taskId: task.id, attempts: build.attempts + 1 };
        tx.set(collections.builds, build.id, planned);
        return planned;
      }
      if (reuse !== undefined && build.mode?.kind === 'make') {
        const made: Build = { ...build, status: 'passed', reason: 'make only: this tree was already made the same way', finishedAt: now };
        tx.set(collections.builds, build.id, made);
        return made;
      }
      if (reuse !== undefined) {
        for (const task of reuse.planned.tasks) tx.set(collections.tasks, task.id, task);
        const planned = enterTests(build, { phase: 'test', snapshotKey: reuse.key, snapshotReused: true }, reuse.planned, now);
        tx.set(collections.builds, build.id, planned);
        reused = reuse.planned;
        return planned;
      }
      const task = newTask(build, makeStep, 1, now);
      tx.set(collections.tasks, task.id, task);
      const key = snapshotKeyFor(build, builder, builder.tests, hostTypeFor(builder, deps.compute) ?? builder.hostType);
      const planned: Build = { ...build, attempts: build.attempts + 1, sharding: { phase: 'make', snapshotKey: key, makeTaskId: task.id } };
      tx.set(collections.builds, build.id, planned);
      return planned;
    });
    if (reused !== undefined) deps.logger.info('tests.planned', plannedFields(build, reused, 'reused'));
    if (modules !== undefined && build.modules?.key === modules.key) {
      deps.logger.info('modules.planned', { ...buildFields(build), key: modules.key, cache: modules.ready ? 'reused' : 'fetch' });
    }
    await publishFollowUp(deps, build);
  };

  /** The shard plan of a build whose snapshot an earlier build already made, if one did. */
  async function reusedSnapshot(build: Build, builder: Builder, suite: TestSuite): Promise<{ key: string; planned: PlannedTests } | undefined> {
    const hostType = hostTypeFor(builder, deps.compute);
    if (hostType === undefined) return undefined;
    const key = snapshotKeyFor(build, builder, suite, hostType);
    const listed = await readListing(deps.blobs, key);
    return listed === undefined ? undefined : { key, planned: await planTests(deps, build, suite, listed) };
  }

  /**
   * The module cache a build's tree needs, and whether it is in the blob store already; undefined when it needs
   * none (no requirements, or vendored) or cannot be looked at here (its repo or host type is not configured: launch
   * ends such a build, saying so).
   */
  async function moduleCacheFor(build: Build, builder: Builder, modules: GoModules): Promise<{ key: string; ready: boolean } | undefined> {
    const repo = deps.catalog.repos.find((candidate) => candidate.name === build.repo);
    const hostType = hostTypeFor(builder, deps.compute);
    if (repo === undefined || hostType === undefined) return undefined;
    const needs = moduleNeedsOf(await moduleFilesOf(await sources.read(repo, build.commit)), modules, builder, hostType);
    if (needs.kind === 'none') return undefined;
    return { key: needs.key, ready: await deps.blobs.exists(blobKeys.modules(needs.key)) };
  }
}

/** Not yet given a task: new, or back from its module fetch. */
export function isUnplanned(build: Build): boolean {
  return !terminalBuildStatuses.includes(build.status) && build.taskId === undefined && build.sharding === undefined;
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
    if (build === undefined || !isUnplanned(build)) return build;
    const failed = unplannable(build, `could not plan: ${reason}`, deps.now());
    tx.set(collections.builds, build.id, failed);
    return failed;
  });
  if (build !== undefined) await publishFollowUp(deps, build);
}

function unplannable(build: Build, reason: string, now: number): Build {
  return { ...build, status: 'infra-failure', reason, finishedAt: now };
}
