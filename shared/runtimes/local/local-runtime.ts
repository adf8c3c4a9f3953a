import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createBlobHandler } from '../../adapters/local/blob-server.ts';
import { createFolderBlobs } from '../../adapters/local/folder-blobs.ts';
import { createGitSource } from '../../adapters/local/git-source.ts';
import { openLocalStore } from '../../adapters/local/local-store.ts';
import { createUrlSigner } from '../../adapters/local/url-signer.ts';
import { describeError } from '../../core/errors.ts';
import { topics } from '../../core/model/messages.ts';
import { terminalBuildStatuses } from '../../core/model/types.ts';
import { taskIdOfResultKey } from '../../core/model/wire.ts';
import type { Compute, OnWorkerExit } from '../../ports/compute.ts';
import type { Logger } from '../../ports/log.ts';
import type { SubscriptionOptions } from '../../ports/messages.ts';
import type { GitHubEnvironment } from '../../core/config/github-environment.ts';
import { wireGitHub } from '../../adapters/github/connect.ts';
import type { Source } from '../../ports/source.ts';
import type { Reporter } from '../../ports/reporter.ts';
import { collections } from '../../ports/state.ts';
import { defaultPipelineOptions, type Catalog, type PipelineDeps, type PipelineOptions } from '../../core/pipeline/deps.ts';
import { createHandlers, handlerTopics, type HandlerName, type Handlers } from '../../core/handlers/handlers.ts';
import { createPoll, type PollSummary } from '../../core/handlers/poll.ts';
import { publishMessage } from '../../core/pipeline/publish.ts';
import { dashboardHosts } from './dashboard-hosts.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { localDeploymentId } from './deployment-id.ts';
import { createDispatcher } from './dispatcher.ts';
import { createLocalCompute } from './local-compute.ts';

export interface LocalRuntimeOptions {
  /** Holds the database, blobs, git mirrors and worker directories. */
  dataDir: string;
  catalog: Catalog;
  logger: Logger;
  /** How often the timer publishes a poll tick; 0 for never (poll on demand only). */
  pollIntervalMs: number;
  /** How often the reaper sweeps for expired and vanished workers (30 s). */
  reapIntervalMs?: number;
  reporters?: readonly Reporter[];
  /** Port for the dashboard and the blob endpoint on 127.0.0.1; 0 picks a free one. */
  port?: number;
  host?: string;
  isolation?: 'auto' | 'pid-namespace' | 'process-group';
  subscription?: Partial<SubscriptionOptions>;
  concurrency?: number;
  pipeline?: Partial<PipelineOptions>;
  /** `off`: every builder runs in the process sandbox (or fails), even where a Docker engine runs. */
  containers?: 'auto' | 'off';
  /** Image build progress at start, for people. */
  onProgress?: (line: string) => void;
  /** Replaces the local compute (containers and the process sandbox); for benchmarks and tests. */
  compute?: (onExit: OnWorkerExit) => Promise<Compute>;
  /** Replaces git; for benchmarks of the control plane alone. */
  source?: Source;
  /**
   * GitHub access: pull requests, membership and statuses for trybots, and the source of repos that live there; with
   * a webhook secret, `POST /webhook` takes `/try` comments.
   */
  github?: GitHubEnvironment;
}

/** How the embedded runtime's subscriptions deliver: what `hermetic try` subscribes with too. */
export const defaultSubscription: SubscriptionOptions = {
  ackDeadlineMs: 120_000,
  maxAttempts: 5,
  minBackoffMs: 500,
  maxBackoffMs: 60_000,
};

/**
 * The embedded default's composition root: every function in this process over SQLite, a blob folder served with
 * signed URLs, git, and containers (where a Docker engine runs) beside the process sandbox; the dashboard (under the
 * names it is reached by, see dashboardHosts) and the blob endpoint on one local HTTP port; timers for polls and the
 * reaper. Throws when the data directory is in use or the port is taken.
 */
export async function startLocalRuntime(options: LocalRuntimeOptions) {
  const { dataDir, logger } = options;
  const lock = await lockDataDir(dataDir);
  const store = openLocalStore(dataDir, { owner: true, onCheckpointFailure: (reason) => logger.error('database.checkpoint-failed', { reason }) });
  const { state, queue } = store;
  const pending = new Set<Promise<unknown>>();
  /** Publishes from callbacks (a finished upload, a worker's exit) are tracked, so "quiet" means quiet. */
  function track(work: Promise<unknown>, what: string): void {
    const tracked = work
      .catch((error: unknown) => logger.error(`${what}.failed`, { error: describeError(error) }))
      .finally(() => pending.delete(tracked));
    pending.add(tracked);
  }

  /** Tasks whose result the blob store had no room for, and what it said: why such a worker ended without one. */
  const refusedResults = new Map<string, string>();
  const onExit: OnWorkerExit = (exit) => {
    const refused = refusedResults.get(exit.taskId);
    refusedResults.delete(exit.taskId);
    track(
      publishMessage(queue, topics.taskFinished, {
        v: 1,
        taskId: exit.taskId,
        cause: 'exited',
        exit: {
          reason: exit.reason,
          code: exit.code,
          signal: exit.signal,
          ...(refused === undefined ? {} : { note: `its result was refused: ${refused}` }),
        },
      }),
      'exit-notice',
    );
  };
  const local = options.compute
    ? { compute: await options.compute(onExit), workerHost: undefined }
    : await createLocalCompute({
        deployment: await localDeploymentId(dataDir),
        workRoot: join(dataDir, 'workers'),
        onExit,
        logger,
        hostTypes: hostTypesUsed(options.catalog),
        containers: options.containers ?? 'auto',
        isolation: options.isolation ?? 'auto',
        onProgress: options.onProgress ?? (() => {}),
      });
  const { compute } = local;

  const server = createServer();
  const address = await listen(server, options.port ?? 0, options.host ?? '127.0.0.1');
  const baseUrl = `http://${address.address}:${address.port}`;
  // Containers reach this host only at their network's gateway: there the blob endpoint alone is served, and
  // every worker, sandboxed or not, gets URLs signed for it.
  const blobServer = local.workerHost === undefined ? undefined : createServer();
  const blobAddress =
    blobServer === undefined ? address : await listenOnKeptPort(blobServer, local.workerHost ?? '', join(dataDir, 'blob-port'));
  const signer = createUrlSigner({
    baseUrl: `http://${blobAddress.address}:${blobAddress.port}`,
    secret: await blobSecret(dataDir),
  });
  const blobs = createFolderBlobs({ root: join(dataDir, 'blobs'), signer });
  const blobHandler = createBlobHandler({
    store: blobs,
    signer,
    onFinalized: (key) => {
      const taskId = taskIdOfResultKey(key);
      if (taskId !== undefined) {
        refusedResults.delete(taskId);
        track(publishMessage(queue, topics.resultLanded, { v: 1, taskId }), 'result-notice');
      }
    },
    onError: (error) => logger.error('blobs.failed', { error: describeError(error) }),
    onStoreFull: (key, error) => {
      logger.error('blobs.store-full', { key, error: error.message });
      const taskId = taskIdOfResultKey(key);
      if (taskId !== undefined) refusedResults.set(taskId, error.message);
    },
  });
  blobServer?.on('request', (req, res) => {
    if (req.url?.startsWith('/blobs/')) void blobHandler(req, res);
    else res.writeHead(404).end();
  });

  const { webhookSecret, ...github } = wireGitHub(options.github, {
    git: createGitSource({ cacheDir: join(dataDir, 'git'), logger }),
    state,
    logger,
    repos: options.catalog.repos,
  });
  const deps: PipelineDeps = {
    catalog: options.catalog,
    state,
    publisher: queue,
    blobs,
    compute,
    ...github,
    source: options.source ?? github.source,
    reporters: [...(options.reporters ?? []), ...github.reporters],
    logger,
    now: Date.now,
    // Local compute lists its workers the moment they start, so a short grace is enough for the reaper.
    options: { ...defaultPipelineOptions, dashboardUrl: baseUrl, reapGraceMs: 5_000, ...options.pipeline },
  };
  const subscription = { ...defaultSubscription, ...options.subscription };
  const handlers: Handlers = createHandlers({
    ...deps,
    deadLetters: queue,
    maxDeliveryAttempts: subscription.maxAttempts,
    ...(webhookSecret === undefined ? {} : { webhookSecret }),
    dashboardHosts: dashboardHosts(address, deps.options.dashboardUrl),
  });
  server.on('request', (req, res) => {
    const path = req.url?.split('?')[0];
    const handler = req.url?.startsWith('/blobs/') ? blobHandler : path === '/webhook' ? handlers.webhook : handlers.dashboard;
    void handler(req, res);
  });

  const names = Object.keys(handlerTopics) as HandlerName[];
  for (const name of names) await queue.subscribe(handlerTopics[name], name, subscription);
  // A message whose handler never answered on its last attempt (it hung, or a runtime died under it) went to the dead
  // letters from the queue itself: record what its handler would have on giving up, as Pub/Sub's dead-letter function
  // does on Google Cloud, so no build waits on it forever.
  queue.onExpired((letter) => {
    const name = names.find((candidate) => candidate === letter.subscription);
    logger.error('message.dead-lettered', { topic: letter.topic, subscription: letter.subscription, reason: letter.reason });
    if (name !== undefined) track(handlers.message[name].abandon(letter.data, letter.reason), `abandon ${name}`);
  });
  const dispatcher = createDispatcher({
    queue,
    logger,
    routes: names.map((name) => ({
      topic: handlerTopics[name],
      subscription: name,
      handle: handlers.message[name],
      // One poll and one sweep at a time: overlapping ones would only do the same work twice.
      concurrency: name === 'poll' || name === 'reap' ? 1 : (options.concurrency ?? 16),
    })),
  });
  // The timers play Cloud Scheduler: they publish ticks, and the functions do the work. The reaper also runs once
  // now, so tasks left launched by a runtime that was killed are retried without waiting.
  const timers = [
    options.pollIntervalMs > 0
      ? setInterval(() => track(publishMessage(queue, topics.pollTick, { v: 1 }), 'poll-tick'), options.pollIntervalMs)
      : undefined,
    setInterval(() => track(publishMessage(queue, topics.reapTick, { v: 1 }), 'reap-tick'), options.reapIntervalMs ?? 30_000),
  ];
  track(publishMessage(queue, topics.reapTick, { v: 1 }), 'reap-tick');
  const poll = createPoll(deps);
  let stopping: Promise<void> | undefined;

  /** True when nothing is queued, running or about to be published, and no worker is alive. */
  async function isQuiet(): Promise<boolean> {
    if (dispatcher.active > 0 || pending.size > 0) return false;
    if ((await queue.backlog()).count > 0) return false;
    return (await compute.list()).length === 0;
  }

  return {
    url: baseUrl,
    deps,
    handlers,
    queue,
    compute,
    /** Polls every watched branch (of `repos` only, when given) now, in this process, and returns what it requested. */
    pollNow(repos?: string[]): Promise<PollSummary> {
      return poll(repos === undefined ? { v: 1 } : { v: 1, repos });
    },
    /** Publishes a poll tick, as the timer does. */
    async tick(): Promise<void> {
      await publishMessage(queue, topics.pollTick, { v: 1 });
    },
    /**
     * Resolves once every given build has a reported verdict and the pipeline is quiet; throws after `timeoutMs`
     * naming the builds still open.
     */
    async waitForBuilds(ids: readonly string[], timeoutMs = Number.POSITIVE_INFINITY): Promise<void> {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const open: string[] = [];
        for (const id of ids) {
          const build = await state.get(collections.builds, id);
          if (build === undefined || !terminalBuildStatuses.includes(build.status) || build.reportedAt === undefined) open.push(id);
        }
        if (open.length === 0 && (await isQuiet())) return;
        if (Date.now() > until) throw new Error(`timed out waiting for ${open.length} build(s): ${open.join(', ')}`);
        await dispatcher.settled(100);
      }
    },
    /** Stops polling and dispatching, kills every worker, and closes the port and the database. Idempotent. */
    stop(): Promise<void> {
      stopping ??= (async () => {
        for (const timer of timers) clearInterval(timer);
        await dispatcher.stop();
        await compute.close();
        await Promise.allSettled([...pending]);
        for (const open of [server, blobServer]) {
          await new Promise<void>((resolve) => {
            if (open === undefined) return resolve();
            open.close(() => resolve());
            open.closeAllConnections();
          });
        }
        await store.close();
        await lock.release();
      })();
      return stopping;
    },
  };
}

export type LocalRuntime = Awaited<ReturnType<typeof startLocalRuntime>>;

/** The host types of the builders the watched repos use, fallbacks included: the images worth having. */
function hostTypesUsed(catalog: Catalog): string[] {
  const builders = new Set(catalog.repos.flatMap((repo) => repo.builders));
  return [...catalog.builders.values()]
    .filter((builder) => builders.has(builder.name))
    .flatMap((builder) => [builder.hostType, ...(builder.fallbackHostType === undefined ? [] : [builder.fallbackHostType])]);
}

async function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new Error(`port ${port} on ${host} is in use; choose another with --port`) : error),
    );
    server.listen(port, host, () => resolve());
  });
  return server.address() as AddressInfo;
}

/**
 * Listens on the port this data directory used last time, if it is free, else on any: containers that outlived a
 * restarted runtime hold URLs signed for the old address, and can finish their uploads only if it still answers.
 */
async function listenOnKeptPort(server: Server, host: string, file: string): Promise<AddressInfo> {
  const kept = Number((await readFile(file, 'utf8').catch(() => '')).trim());
  let address: AddressInfo;
  try {
    address = await listen(server, Number.isInteger(kept) && kept > 0 ? kept : 0, host);
  } catch {
    address = await listen(server, 0, host);
  }
  await writeFile(file, `${address.port}\n`);
  return address;
}

/** The HMAC key for signed URLs, kept in the data directory so URLs stay valid across a restart. */
async function blobSecret(dataDir: string): Promise<Uint8Array> {
  const file = join(dataDir, 'blob-secret');
  try {
    return await readFile(file);
  } catch {
    await mkdir(dataDir, { recursive: true });
    const secret = randomBytes(32);
    await writeFile(file, secret, { mode: 0o600 });
    return secret;
  }
}
