import { PermanentError } from '../errors.ts';
import type { TaskReady } from '../model/messages.ts';
import type { Builder, Task } from '../model/types.ts';
import { blobKeys, type TaskSpec } from '../model/wire.ts';
import { collections } from '../ports/state.ts';
import type { PipelineDeps } from './deps.ts';
import { finishTask } from './finish-task.ts';

/** Source tarballs remembered as uploaded; past this the memory starts over. */
const maxRememberedSources = 10_000;

/** The largest result object a worker may upload. */
const maxResultBytes = 1 << 20;

/**
 * The `launch` function: starts the one worker of a pending task, with signed URLs for its source, log chunks and
 * result that expire shortly after its deadline. The worker is started before the task is marked launched: compute
 * adapters are idempotent by task ID, so a redelivery after a crash at any point starts no second worker. A task
 * that is not pending is left alone. A builder or host type this runtime cannot run ends the build as an infra
 * failure that says so.
 */
export function createLaunch(deps: PipelineDeps) {
  // Source tarballs are content-addressed and never change: remember which are in place, and let concurrent
  // launches of one commit's builders share a single archive-and-upload.
  const sources = new Map<string, Promise<void>>();

  return async function launch(message: TaskReady): Promise<void> {
    const task = await deps.state.get(collections.tasks, message.taskId);
    if (task === undefined) throw new PermanentError(`task ${message.taskId} does not exist`);
    if (task.status !== 'pending') return;
    const builder = deps.catalog.builders.get(task.builder);
    if (builder === undefined) {
      await finishTask(deps, task.id, { status: 'lost', final: true, reason: `builder "${task.builder}" is not configured` });
      return;
    }
    const hostType = [builder.hostType, builder.fallbackHostType].find(
      (candidate) => candidate !== undefined && deps.compute.hostTypes.includes(candidate),
    );
    if (hostType === undefined) {
      const why = deps.compute.unavailableReason?.(builder.hostType) ?? `it runs: ${deps.compute.hostTypes.join(', ')}`;
      const reason = `host type "${builder.hostType}" is not available on this runtime: ${why}`;
      await finishTask(deps, task.id, { status: 'lost', final: true, reason });
      return;
    }
    // A result already in means a worker ran (its notice is on the way to collect): starting another would be a
    // second worker for one task, which an adapter whose workers leave no trace cannot otherwise prevent.
    if (await deps.blobs.exists(blobKeys.result(task.id))) return;
    const sourceUrl = await ensureSource(task);
    if (sourceUrl === undefined) return;
    const deadline = deps.now() + builder.timeoutSeconds * 1000;
    const spec = await specFor(task, builder, sourceUrl, deadline);
    await deps.compute.start({
      taskId: task.id,
      hostType,
      spec,
      deadline,
      labels: { task: task.id, build: task.buildId, builder: task.builder, repo: task.repo },
      network: builder.network,
    });
    const launched = await deps.state.transaction(async (tx) => {
      const current = await tx.get(collections.tasks, task.id);
      const build = await tx.get(collections.builds, task.buildId);
      if (current?.status !== 'pending' || build === undefined) return false;
      const now = deps.now();
      tx.set(collections.tasks, task.id, { ...current, status: 'launched', hostType, launchedAt: now, deadline });
      if (build.status === 'queued') tx.set(collections.builds, build.id, { ...build, status: 'running', startedAt: now });
      return true;
    });
    if (launched) {
      deps.logger.info('task.launched', {
        task: task.id,
        build: task.buildId,
        repo: task.repo,
        commit: task.commit,
        builder: task.builder,
        attempt: task.attempt,
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
    const key = blobKeys.source(task.repo, task.commit);
    let upload = sources.get(key);
    if (upload === undefined) {
      upload = (async () => {
        if (!(await deps.blobs.exists(key))) await deps.blobs.put(key, await deps.source.archive(repo, task.commit));
      })();
      upload.catch(() => sources.delete(key));
      if (sources.size >= maxRememberedSources) sources.clear();
      sources.set(key, upload);
    }
    await upload;
    return key;
  }

  async function specFor(task: Task, builder: Builder, sourceKey: string, deadline: number): Promise<TaskSpec> {
    const expiresAt = deadline + deps.options.urlSlackMs;
    // The log budget is whole chunks: exactly maxLogBytes when it is a multiple of the chunk size.
    const chunkBytes = Math.min(deps.options.logChunkBytes, builder.maxLogBytes);
    const chunks = Math.max(1, Math.ceil(builder.maxLogBytes / chunkBytes));
    const chunkUrls = await Promise.all(
      Array.from({ length: chunks }, (_, index) =>
        deps.blobs.signUrl(blobKeys.logChunk(task.id, index), { method: 'PUT', expiresAt, maxBytes: chunkBytes }),
      ),
    );
    return {
      v: 1,
      taskId: task.id,
      builder: builder.name,
      attempt: task.attempt,
      steps: builder.steps,
      env: { ...builder.env, GO_BUILDER_NAME: builder.name },
      deadline,
      source: { url: await deps.blobs.signUrl(sourceKey, { method: 'GET', expiresAt }) },
      log: { chunkUrls, chunkBytes },
      result: {
        url: await deps.blobs.signUrl(blobKeys.result(task.id), { method: 'PUT', expiresAt, maxBytes: maxResultBytes }),
      },
    };
  }
}
