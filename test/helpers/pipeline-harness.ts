import type { CloudEvent } from '@google-cloud/functions-framework';
import { createFunctions, triggers, type FunctionDeps, type MessageFunctionName } from '../../shared/runtimes/google-cloud/functions.ts';
import { messagePublishedEvent, type MessagePublishedData } from '../../shared/adapters/gcp/pubsub-function.ts';
import { createUrlSigner } from '../../shared/adapters/local/url-signer.ts';
import { parseConfig, type RawConfig } from '../../shared/core/config/config.ts';
import { buildId } from '../../shared/core/model/ids.ts';
import { topics } from '../../shared/core/model/messages.ts';
import { collections } from '../../shared/ports/state.ts';
import type { Build, Machine, TryMode } from '../../shared/core/model/types.ts';
import type { WorkerExit } from '../../shared/ports/compute.ts';
import { silentLogger, type Logger } from '../../shared/ports/log.ts';
import type { Delivery } from '../../shared/ports/messages.ts';
import type { GitHub } from '../../shared/ports/github.ts';
import type { Reporter } from '../../shared/ports/reporter.ts';
import { createGitHubReporter } from '../../shared/core/trybots/github-reporter.ts';
import { defaultPipelineOptions } from '../../shared/core/pipeline/deps.ts';
import { createHandlers } from '../../shared/core/handlers/handlers.ts';
import { publishMessage } from '../../shared/core/pipeline/publish.ts';
import { createFakeCompute } from '../fakes/fake-compute.ts';
import { createFakeSource } from '../fakes/fake-source.ts';
import { createMemoryBlobs } from '../fakes/memory-blobs.ts';
import { createMemoryQueue } from '../fakes/memory-queue.ts';
import { createMemoryState } from '../fakes/memory-state.ts';

const subscription = { ackDeadlineMs: 60_000, maxAttempts: 5, minBackoffMs: 10, maxBackoffMs: 100 };

/**
 * The whole pipeline over in-memory fakes, driven by hand: messages sit in the queue until the test delivers them,
 * once, twice, or in any order. Builders: `ok` (host, 3 attempts), `no-spot` (refuses Spot VMs), `vm` (a host type the fake cannot run), `fb`
 * (prefers one the fake cannot run, falls back to `host`), `gomod` (a Go module as one whole task), and the sharded Go module builders `mod` (3 shards, 2
 * for trybots), `mod-once` (1 shard; the same snapshot as `mod`), `mod-noretry` (3 shards, failures not retried) and
 * `tree` (the Go tree, 1 shard).
 */
export async function createPipelineHarness(
  options: {
    logger?: Logger;
    /** Workers run on this VM, as on Compute Engine. */
    machine?: Machine;
    /** Who may start trybots (the config's `trybots` section). */
    trybots?: RawConfig['trybots'];
    /** GitHub, for membership, comments and statuses; builds of `demo` (acme/demo) are reported to it. */
    github?: GitHub;
    /** What the webhook checks deliveries' signatures with. */
    webhookSecret?: string;
  } = {},
) {
  let clock = 1_700_000_000_000;
  const now = () => clock;
  const state = createMemoryState();
  const queue = createMemoryQueue({ now });
  const signer = createUrlSigner({ baseUrl: 'http://blobs.test', secret: new Uint8Array(32).fill(7), now });
  const blobs = createMemoryBlobs({ signer });
  const exits: WorkerExit[] = [];
  const fake = createFakeCompute({ onExit: (exit) => exits.push(exit) });
  const machine = options.machine;
  const compute = machine === undefined ? fake : Object.assign(fake, { machineOf: () => machine });
  const source = createFakeSource();
  const reported: Build[] = [];
  const reporter: Reporter = {
    name: 'test',
    async report(build) {
      reported.push(build);
    },
  };
  const config = parseConfig(
    {
      repos: [
        {
          name: 'demo',
          url: '/nowhere/demo',
          github: 'acme/demo',
          branches: ['main'],
          builders: ['ok'],
          trybot: { builders: ['ok'], paths: [{ match: ['src/**'], builders: ['mod'] }] },
        },
      ],
      ...(options.trybots === undefined ? {} : { trybots: options.trybots }),
      builders: {
        ok: { type: 'command', command: 'true', maxAttempts: 3, timeoutSeconds: 60 },
        'no-spot': { type: 'command', command: 'true', spot: false },
        vm: { type: 'command', command: 'true', hostType: 'windows-amd64' },
        fb: { type: 'command', command: 'true', hostType: 'linux-arm64', fallbackHostType: 'host' },
        mod: { type: 'go-module', shards: { postSubmit: 3, trybot: 2 }, maxAttempts: 2, timeoutSeconds: 60 },
        gomod: { type: 'go-module', timeoutSeconds: 60 },
        'mod-once': { type: 'go-module', shards: 1, maxAttempts: 2, timeoutSeconds: 60 },
        'mod-noretry': { type: 'go-module', shards: 3, retryFailed: false, timeoutSeconds: 60 },
        tree: { type: 'go-tree', shards: 1, timeoutSeconds: 60 },
      },
    },
    'test-config.json',
  );
  const demoRepo = config.repos[0];
  if (demoRepo === undefined) throw new Error('the harness config has no repo');
  const deps: FunctionDeps = {
    catalog: config,
    state,
    publisher: queue,
    blobs,
    compute,
    source,
    reporters: options.github === undefined ? [reporter] : [reporter, createGitHubReporter(options.github, config.repos)],
    ...(options.github === undefined ? {} : { github: options.github }),
    logger: options.logger ?? silentLogger,
    now,
    options: defaultPipelineOptions,
    deadLetters: queue,
    maxDeliveryAttempts: subscription.maxAttempts,
    ...(options.webhookSecret === undefined ? {} : { webhookSecret: options.webhookSecret }),
  };
  // The functions as Google Cloud runs them (CloudEvents in, Pub/Sub's retry by throwing), and the core's handlers
  // beneath them, which the embedded runtime calls with plain deliveries.
  const functions = createFunctions(deps);
  const handlers = createHandlers(deps);
  const names = Object.keys(triggers) as MessageFunctionName[];
  for (const name of names) await queue.subscribe(triggers[name], name, subscription);

  function eventOf(name: MessageFunctionName, delivery: Pick<Delivery, 'messageId' | 'data' | 'attributes' | 'publishedAt' | 'attempt'>): CloudEvent<MessagePublishedData> {
    return messagePublishedEvent({
      project: 'test',
      topic: triggers[name],
      subscription: name,
      messageId: delivery.messageId,
      data: delivery.data,
      attributes: delivery.attributes,
      publishedAt: delivery.publishedAt,
      deliveryAttempt: delivery.attempt,
    });
  }

  return {
    state,
    queue,
    blobs,
    compute,
    source,
    config,
    reported,
    exits,
    functions,
    handlers,
    advance(ms: number) {
      clock += ms;
    },
    /** Takes every message due on a function's subscription, acked: the test decides what to deliver. */
    async take(name: MessageFunctionName): Promise<Delivery[]> {
      const taken: Delivery[] = [];
      for (let batch = await queue.pull(name, 100); batch.length > 0; batch = await queue.pull(name, 100)) {
        for (const delivery of batch) await queue.ack(delivery);
        taken.push(...batch);
      }
      return taken;
    },
    /** Hands one delivery to its function, as the platform would; resolves or rejects as the function does. */
    deliver(name: MessageFunctionName, delivery: Delivery): Promise<void> {
      return functions.message[name](eventOf(name, delivery));
    },
    /** Hands raw bytes to a function, as a malformed message would arrive. */
    deliverRaw(name: MessageFunctionName, data: string): Promise<void> {
      return functions.message[name](
        eventOf(name, { messageId: 'raw-1', data: Buffer.from(data), attributes: {}, publishedAt: clock, attempt: 1 }),
      );
    },
    /** Delivers everything queued, function by function, until the queue is empty. */
    async drain(): Promise<void> {
      for (let moved = true; moved; ) {
        moved = false;
        for (const name of names) {
          for (const delivery of await this.take(name)) {
            moved = true;
            await this.deliver(name, delivery);
          }
        }
      }
    },
    /**
     * Requests a build of `commit` (a new commit by default) on a builder the repo need not list, as a poll would,
     * and runs the pipeline until it is quiet; returns the build's ID.
     */
    async request(builder: string, options: { commit?: string; trybot?: boolean; mode?: TryMode } = {}): Promise<string> {
      const commit = options.commit ?? source.push('demo', 'main');
      const id = buildId('demo', commit, builder);
      const tree = (await source.changes(demoRepo, 'main', undefined, 1000)).commits.find((info) => info.hash === commit)?.tree;
      await state.transaction(async (tx) => {
        tx.set(collections.builds, id, {
          id,
          repo: 'demo',
          commit,
          builder,
          seq: 1,
          ...(tree === undefined ? {} : { tree }),
          ...(options.trybot === true ? { trybot: true } : {}),
          ...(options.mode === undefined ? {} : { mode: options.mode }),
          status: 'queued',
          createdAt: clock,
          attempts: 0,
        });
      });
      await publishMessage(queue, topics.buildRequested, { v: 1, buildId: id, repo: 'demo', commit, builder });
      await this.drain();
      return id;
    },
    /** Publishes a poll tick and delivers it. */
    async poll(): Promise<void> {
      await publishMessage(queue, topics.pollTick, { v: 1 });
      for (const delivery of await this.take('poll')) await this.deliver('poll', delivery);
    },
  };
}

export type PipelineHarness = Awaited<ReturnType<typeof createPipelineHarness>>;
