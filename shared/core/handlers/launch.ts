import { PermanentError } from '../errors.ts';
import type { TaskReady } from '../model/messages.ts';
import type { Builder, GoModules, Step, Task } from '../model/types.ts';
import type { WorkerRequest } from '../../ports/compute.ts';
import { distNamingOf, unitSteps } from '../sharding/test-suites.ts';
import { formatIssues } from '../model/messages.ts';
import { blobKeys, TaskSpec } from '../model/wire.ts';
import { collections } from '../../ports/state.ts';
import type { PipelineDeps } from '../pipeline/deps.ts';
import { finishTask } from '../pipeline/finish-task.ts';
import { fetchEgress, fetchEnv, fetchStep, modulesStep, proxyDirectories, readyModuleKey } from '../pipeline/go-modules.ts';
import { createSourceTarballs } from '../pipeline/source-tarball.ts';
import { missingToolsReason } from '../pipeline/missing-tools.ts';
import { announceMoves } from '../pipeline/announce-moves.ts';
import { hostTypeFor, makeStep, readListing } from '../pipeline/sharded-build.ts';
import { stepsForMode } from '../trybots/try-modes.ts';

/** The largest result object a worker may upload, besides its captured output. */
const maxResultBytes = 1 << 20;

/** The most bytes of a make worker's unit listing. */
const maxOutputBytes = 4 << 20;

/** What a task's worker is to do: where its tree comes from, its steps, and what else its spec carries. */
interface Work {
  sourceKey: string;
  layout?: 'snapshot';
  steps: Step[];
  env: Record<string, string>;
  keepGoing?: boolean;
  outputBytes?: number;
  /** Where the worker puts its snapshot of the built tree, and what it leaves out. */
  snapshot?: { key: string; exclude: string[]; maxBytes: number };
  /** A go-module task's module cache: unpacked from `download`, made and uploaded to `upload`, or neither (see TaskSpec). */
  goModules?: { download?: string; upload?: string };
  /** Its steps may reach the network (a module fetch), whatever the builder says. */
  network?: boolean;
}

/** What a fetch worker needs of the world: the local directories of `file://` proxies, and where else it connects. */
function proxyAccess(modules: GoModules): Pick<WorkerRequest, 'readOnlyPaths' | 'egress'> {
  const readOnlyPaths = proxyDirectories(modules.proxy);
  const egress = fetchEgress(modules);
  return { ...(readOnlyPaths.length === 0 ? {} : { readOnlyPaths }), ...(egress === undefined ? {} : { egress }) };
}

/** The signed URLs of a task's module cache: a GET for one to unpack, a PUT capped at the unpack limit for one to make. */
async function signModules(deps: Pick<PipelineDeps, 'blobs'>, modules: NonNullable<Work['goModules']>, builder: Builder, expiresAt: number): Promise<NonNullable<TaskSpec['goModules']>> {
  return {
    ...(modules.download === undefined ? {} : { url: await deps.blobs.signUrl(blobKeys.modules(modules.download), { method: 'GET', expiresAt }) }),
    ...(modules.upload === undefined
      ? {}
      : { upload: { url: await deps.blobs.signUrl(blobKeys.modules(modules.upload), { method: 'PUT', expiresAt, maxBytes: builder.unpack.maxBytes }), maxBytes: builder.unpack.maxBytes } }),
  };
}

/**
 * The `launch` function: starts the one worker of a pending task, with signed URLs for its source, log chunks and
 * result that expire shortly after its deadline. The worker is started before the task is marked launched: compute
 * adapters are idempotent by task ID, so a redelivery after a crash at any point starts no second worker. A task
 * that is not pending is left alone. A builder or host type this runtime cannot run ends the build as an infra
 * failure that says so.
 */
export function createLaunch(deps: PipelineDeps) {
  const sources = createSourceTarballs(deps);

  return async function launch(message: TaskReady): Promise<void> {
    const task = await deps.state.get(collections.tasks, message.taskId);
    if (task === undefined) throw new PermanentError(`task ${message.taskId} does not exist`);
    if (task.status !== 'pending') return;
    const builder = deps.catalog.builders.get(task.builder);
    if (builder === undefined) {
      await finishTask(deps, task.id, { status: 'lost', final: true, reason: `builder "${task.builder}" is not configured` });
      return;
    }
    const hostType = hostTypeFor(builder, deps.compute);
    if (hostType === undefined) {
      const why = deps.compute.unavailableReason?.(builder.hostType) ?? `it runs: ${deps.compute.hostTypes.join(', ')}`;
      const reason = `host type "${builder.hostType}" is not available on this runtime: ${why}`;
      await finishTask(deps, task.id, { status: 'lost', final: true, reason });
      return;
    }
    const missing = (await deps.compute.missingPrograms?.(hostType, builder.tools)) ?? [];
    if (missing.length > 0) {
      await finishTask(deps, task.id, { status: 'lost', final: true, reason: missingToolsReason(missing, hostType) });
      return;
    }
    // A result already in means a worker ran (its notice is on the way to collect): starting another would be a
    // second worker for one task, which an adapter whose workers leave no trace cannot otherwise prevent.
    if (await deps.blobs.exists(blobKeys.result(task.id))) return;
    const work = await workFor(task, builder);
    if (work === undefined) return;
    const deadline = deps.now() + builder.timeoutSeconds * 1000;
    const spec = await specFor(task, builder, work, deadline);
    // The worker would refuse a spec its schema does not allow; better to say so here, once, than lose it three times.
    const invalid = TaskSpec.safeParse(spec);
    if (!invalid.success) {
      await finishTask(deps, task.id, { status: 'lost', final: true, reason: `cannot make a valid task spec: ${formatIssues(invalid.error)}` });
      return;
    }
    await deps.compute.start({
      taskId: task.id,
      hostType,
      spec,
      deadline,
      labels: { task: task.id, build: task.buildId, builder: task.builder, repo: task.repo },
      network: work.network ?? builder.network,
      ...(work.network === true && builder.modules !== undefined ? proxyAccess(builder.modules) : {}),
      spot: builder.spot,
    });
    const machine = deps.compute.machineOf?.(hostType, builder.spot);
    const launched = await deps.state.transaction(async (tx) => {
      const current = await tx.get(collections.tasks, task.id);
      const build = await tx.get(collections.builds, task.buildId);
      if (current?.status !== 'pending' || build === undefined) return { launched: false, started: false };
      const now = deps.now();
      tx.set(collections.tasks, task.id, { ...current, status: 'launched', hostType, ...(machine === undefined ? {} : { machine }), launchedAt: now, deadline });
      if (build.status === 'queued') tx.set(collections.builds, build.id, { ...build, status: 'running', startedAt: now });
      return { launched: true, started: build.status === 'queued' };
    });
    if (launched.started) await announceMoves(deps, [task.buildId]);
    if (launched.launched) {
      deps.logger.info('task.launched', {
        task: task.id,
        build: task.buildId,
        repo: task.repo,
        commit: task.commit,
        builder: task.builder,
        attempt: task.attempt,
        step: task.step,
        hostType,
      });
      if (hostType !== builder.hostType) {
        deps.logger.info('task.fallback', { task: task.id, builder: builder.name, wanted: builder.hostType, hostType });
      }
    }
  };

  /** Puts the commit's tarball in the blob store if it is not there yet; undefined when the build was failed. */
  async function ensureSource(task: Task): Promise<string | undefined> {
    const repo = deps.catalog.repos.find((candidate) => candidate.name === task.repo);
    if (repo === undefined) {
      await finishTask(deps, task.id, { status: 'lost', final: true, reason: `repo "${task.repo}" is not configured` });
      return undefined;
    }
    return sources.ensure(repo, task.commit);
  }

  /**
   * The work of a task: a whole build runs the builder's steps on the commit's tree; a make task its suite's make and
   * list steps, then uploads a snapshot; a shard or retry task runs its units on the snapshot. Undefined when the
   * task was ended instead (its repo or snapshot is gone).
   */
  async function workFor(task: Task, builder: Builder): Promise<Work | undefined> {
    const suite = builder.tests;
    const build = suite === undefined && builder.modules === undefined ? undefined : await deps.state.get(collections.builds, task.buildId);
    if (task.step === modulesStep) {
      const key = build?.modules?.key;
      if (builder.modules === undefined || key === undefined) throw new PermanentError(`task ${task.id} fetches modules for build ${task.buildId}, which has none to fetch`);
      const sourceKey = await ensureSource(task);
      if (sourceKey === undefined) return undefined;
      return { sourceKey, steps: [fetchStep(builder.modules)], env: fetchEnv(builder.modules), goModules: { upload: key }, network: true };
    }
    // Where a go-module builder's steps find modules: the build's fetched cache, or an empty one (read-only, both).
    const download = build === undefined ? undefined : readyModuleKey(build);
    const modules = builder.modules === undefined ? {} : { goModules: download === undefined ? {} : { download } };
    if (suite === undefined) {
      const sourceKey = await ensureSource(task);
      return sourceKey === undefined ? undefined : { sourceKey, steps: stepsForMode(builder.steps, task.mode), env: {}, ...modules };
    }
    const snapshotKey = build?.sharding?.snapshotKey;
    if (snapshotKey === undefined) throw new PermanentError(`build ${task.buildId} of task ${task.id} is not a sharded build`);
    if (task.step === makeStep) {
      const sourceKey = await ensureSource(task);
      if (sourceKey === undefined) return undefined;
      return {
        sourceKey,
        steps: [...suite.make, suite.list],
        env: {},
        outputBytes: maxOutputBytes,
        snapshot: { key: snapshotKey, exclude: suite.snapshotExclude, maxBytes: suite.snapshotMaxBytes },
        ...modules,
      };
    }
    if (!(await deps.blobs.exists(blobKeys.snapshot(snapshotKey)))) {
      await finishTask(deps, task.id, { status: 'lost', final: true, reason: 'the snapshot of the built tree is gone from the blob store' });
      return undefined;
    }
    // The Go tree's package units are named by version (see DistNaming): the snapshot's whole listing tells which.
    const listed = suite.kind === 'go-tree' ? await readListing(deps.blobs, snapshotKey) : undefined;
    return {
      sourceKey: blobKeys.snapshot(snapshotKey),
      layout: 'snapshot',
      steps: unitSteps(suite, task.units ?? [], listed === undefined ? undefined : distNamingOf(listed)),
      keepGoing: true,
      // A test can tell it is being run again to check a failure.
      env: task.step.startsWith('retry-') ? { HERMETIC_RETRY: '1' } : {},
      // The snapshot brought the make task's module cache.
      ...(builder.modules === undefined ? {} : { goModules: {} }),
    };
  }

  async function specFor(task: Task, builder: Builder, work: Work, deadline: number): Promise<TaskSpec> {
    const expiresAt = deadline + deps.options.urlSlackMs;
    // The log budget is whole chunks: exactly maxLogBytes when it is a multiple of the chunk size.
    const chunkBytes = Math.min(deps.options.logChunkBytes, builder.maxLogBytes);
    const chunks = Math.max(1, Math.ceil(builder.maxLogBytes / chunkBytes));
    const chunkUrls = await Promise.all(
      Array.from({ length: chunks }, (_, index) =>
        deps.blobs.signUrl(blobKeys.logChunk(task.id, index), { method: 'PUT', expiresAt, maxBytes: chunkBytes }),
      ),
    );
    const snapshot =
      work.snapshot === undefined
        ? undefined
        : {
            url: await deps.blobs.signUrl(blobKeys.snapshot(work.snapshot.key), { method: 'PUT', expiresAt, maxBytes: work.snapshot.maxBytes }),
            exclude: work.snapshot.exclude,
            maxBytes: work.snapshot.maxBytes,
          };
    const goModules = work.goModules === undefined ? undefined : await signModules(deps, work.goModules, builder, expiresAt);
    return {
      v: 1,
      taskId: task.id,
      builder: builder.name,
      attempt: task.attempt,
      steps: work.steps,
      env: { ...builder.env, ...work.env, GO_BUILDER_NAME: builder.name },
      deadline,
      source: {
        url: await deps.blobs.signUrl(work.sourceKey, { method: 'GET', expiresAt }),
        ...(work.layout === undefined ? {} : { layout: work.layout }),
      },
      unpack: builder.unpack,
      ...(work.keepGoing === undefined ? {} : { keepGoing: work.keepGoing }),
      ...(work.outputBytes === undefined ? {} : { outputBytes: work.outputBytes }),
      ...(snapshot === undefined ? {} : { snapshot }),
      ...(goModules === undefined ? {} : { goModules }),
      log: { chunkUrls, chunkBytes },
      result: {
        url: await deps.blobs.signUrl(blobKeys.result(task.id), { method: 'PUT', expiresAt, maxBytes: maxResultBytes + (work.outputBytes ?? 0) }),
      },
    };
  }
}
