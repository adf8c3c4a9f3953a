// How much memory each deployed function needs: every function in a process of its own, started by
// functions-framework's own main as Cloud Functions starts it, handling the real events of whole builds over the
// local emulators and fakes the Google Cloud end-to-end tests use (Firestore and Pub/Sub emulators, the Cloud Storage
// and Compute Engine fakes, VMs that run the real boot script and agent). One build, and one trybot request, is of a
// Go source tree served by `git daemon`, so poll, launch and trybot mirror a Go-tree-sized repository into their /tmp,
// as on Cloud Functions. Each run: a poll tick, three builds (one sharded, so merge runs), two trybot requests, a
// reap tick, a dead letter, a webhook ping, and the dashboard's pages.
//
// A function's figure is its process's resident high-water mark (VmHWM), plus the largest sum of its child processes'
// (git, sampled every 50 ms), plus what it left in its TMPDIR: on Cloud Functions /tmp is memory, counted against
// the same limit. Prints the median of each over --runs whole runs, the size shared/runtimes/google-cloud/function-sizes.ts's rule
// gives, and the extrapolation to the Go repository's full history for the functions that mirror it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync, readdirSync, lstatSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PubSub } from '@google-cloud/pubsub';
import { triggers, type MessageFunctionName } from '../shared/runtimes/google-cloud/functions.ts';
import { messagePublishedEvent } from '../shared/adapters/gcp/pubsub-function.ts';
import { appEngineClasses, dashboardSize, functionSizes, headroom, sizeFor, type CloudFunctionName } from '../shared/runtimes/google-cloud/function-sizes.ts';
import { createPubsubPublisher } from '../shared/adapters/gcp/pubsub-publisher.ts';
import { commitGoTree, defaultZoneinfo, newestDebianTree, versionOf } from '../shared/cli/go-tree.ts';
import { topics } from '../shared/core/model/messages.ts';
import { publishMessage, topicAttribute } from '../shared/core/pipeline/publish.ts';
import { notifyResultLanded } from '../test/helpers/bucket-notification.ts';
import { bootScriptGuest, startFakeGce } from '../test/fakes/gce-server.ts';
import { createTestServiceAccount, startFakeGcs } from '../test/fakes/gcs-server.ts';
import { emulatorHost, emulatorMissing, freePort } from '../test/helpers/emulators.ts';
import { startEventarcRelay } from '../test/helpers/eventarc-relay.ts';
import { createTestRepo } from '../test/helpers/git-repo.ts';
import { benchArgs } from './args.ts';
import type { BenchClients } from './function-memory-target.ts';
import { median } from './stats.ts';
import { describeError } from '../shared/core/errors.ts';

const usage = `Usage: node bench/function-memory.ts [options]
Measures each deployed function's peak memory, in a process of its own, over whole builds on the local emulators.
  --runs N            whole runs, every function in fresh processes each time (default 3)
  --go-tree DIR       a git repository of the Go tree for poll and launch to mirror (hermetic go-tree DIR makes
                      one; default: one made in a temporary directory from Debian's golang-*-src)
  --history-objects N the Go repository's full history, in objects, for the extrapolation (default 600000)
  --history-mib N     the same, packed, in MiB (default 400)
  --help              this text`;
const values = benchArgs(usage, {
  runs: { type: 'string', default: '3' },
  'go-tree': { type: 'string' },
  'history-objects': { type: 'string', default: '600000' },
  'history-mib': { type: 'string', default: '400' },
});
const runs = Number(values.runs);
const history = { objects: Number(values['history-objects']), mib: Number(values['history-mib']) };
for (const missing of [emulatorMissing('firestore'), emulatorMissing('pubsub')]) {
  if (missing !== false) {
    process.stderr.write(`function-memory: ${missing}\n`);
    process.exit(1);
  }
}

const mib = (bytes: number) => bytes / 2 ** 20;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const functionsFramework = fileURLToPath(new URL('../node_modules/@google-cloud/functions-framework/build/src/main.js', import.meta.url));
const target = fileURLToPath(new URL('./function-memory-target.ts', import.meta.url));
const bucket = 'hermetic-bench-blobs';
const webhookSecret = 'bench webhook secret';
type Measured = CloudFunctionName | 'dashboard';
const measured: Measured[] = [...(Object.keys(triggers) as MessageFunctionName[]), 'webhook', 'dashboard'];

/** What the sizes table's rule gives a figure, or why it gives nothing. */
function ruleSize(figureMiB: number): string {
  try {
    return `${sizeFor(figureMiB).memoryMiB} MiB`;
  } catch (error) {
    return describeError(error);
  }
}

/** A process's resident high-water mark, in bytes; 0 once it is gone. */
function highWaterMark(pid: number): number {
  try {
    const kb = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return Number(kb ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** Every live descendant of a process, through /proc's children lists. */
function descendants(pid: number): number[] {
  const found: number[] = [];
  const walk = (parent: number) => {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${parent}/task`);
    } catch {
      return;
    }
    for (const task of tasks) {
      let children: string[] = [];
      try {
        children = readFileSync(`/proc/${parent}/task/${task}/children`, 'utf8').split(' ').filter(Boolean);
      } catch {
        continue;
      }
      for (const child of children.map(Number)) {
        found.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return found;
}

/** Bytes a directory tree takes, as a memory-backed /tmp counts them: allocated blocks. */
function allocatedBytes(dir: string): number {
  let total = 0;
  const walk = (path: string) => {
    const stat = lstatSync(path, { throwIfNoEntry: false });
    if (stat === undefined) return;
    total += stat.blocks * 512;
    if (stat.isDirectory()) for (const entry of readdirSync(path)) walk(join(path, entry));
  };
  walk(dir);
  return total;
}

/** One function served by functions-framework in a process of its own, with its /tmp and its children watched. */
interface Served {
  name: Measured;
  url: string;
  child: ChildProcess;
  tmp: string;
  /** The largest sum of the descendants' high-water marks seen so far. */
  childrenPeak: number;
}

async function serve(name: Measured, env: NodeJS.ProcessEnv, scratch: string): Promise<Served> {
  const port = await freePort();
  const tmp = join(scratch, `tmp-${name}`);
  await mkdir(tmp, { recursive: true });
  const signature = name === 'dashboard' || name === 'webhook' ? 'http' : 'cloudevent';
  const child = spawn(process.execPath, [functionsFramework, `--target=${name}`, `--signature-type=${signature}`, `--source=${target}`, `--port=${port}`], {
    env: { ...env, TMPDIR: tmp, NODE_ENV: 'development' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('Serving function')) resolve();
    };
    // The function's own log lines come here too; read and dropped, so the pipe never fills.
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code} before serving: ${stderr}`)));
  });
  return { name, url: `http://127.0.0.1:${port}/`, child, tmp, childrenPeak: 0 };
}

async function post(url: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/cloudevents+json' }): Promise<number> {
  const response = await fetch(url, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  await response.arrayBuffer();
  return response.status;
}

/** Waits until the dashboard lists at least `count` builds and none is still queued or running; returns them. */
async function buildsSettled(dashboard: string, count: number, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const { builds } = (await (await fetch(`${dashboard}api/builds?limit=100`)).json()) as {
      builds: Array<{ repo: string; builder: string; status: string; reason?: string }>;
    };
    const open = builds.filter((build) => build.status === 'queued' || build.status === 'running');
    if (builds.length >= count && open.length === 0) return builds.map((build) => `${build.repo}/${build.builder} ${build.status}${build.reason === undefined ? '' : ` (${build.reason})`}`).join(', ');
    if (Date.now() > deadline) throw new Error(`builds did not settle within ${ms / 1000} s: ${JSON.stringify(builds)}`);
    await sleep(500);
  }
}

/** The repositories the runs build: a small one, a Go module in two shards, and the Go tree. */
async function makeRepos(scratch: string, goTree: string | undefined) {
  const calc = await createTestRepo(join(scratch, 'repos', 'calc'));
  await calc.commit({ 'check.sh': '#!/bin/sh\necho "checking on $GO_BUILDER_NAME"\n' }, 'check: pass', { executable: ['check.sh'] });
  const mod = await createTestRepo(join(scratch, 'repos', 'mod'));
  const test = (pkg: string) => `package ${pkg}\n\nimport "testing"\n\nfunc TestIt(t *testing.T) {}\n`;
  await mod.commit({ 'go.mod': 'module example.com/mod\n\ngo 1.19\n', 'a/a_test.go': test('a'), 'b/b_test.go': test('b'), 'c/c_test.go': test('c') }, 'three packages');
  let go = goTree;
  if (go === undefined) {
    go = join(scratch, 'repos', 'go');
    process.stderr.write('function-memory: making a Go tree repository (about a minute)\n');
    const from = await newestDebianTree();
    await commitGoTree(go, from, await versionOf(from), defaultZoneinfo);
  }
  return { calc: calc.path, mod: mod.path, go };
}

/** A git repository's object count and packed size, as a fresh clone of it would hold them. */
function objectsOf(mirror: string): { objects: number; packedBytes: number } {
  const packs = join(mirror, 'objects', 'pack');
  let objects = 0;
  let packedBytes = 0;
  for (const entry of readdirSync(packs, { withFileTypes: true })) {
    const path = join(packs, entry.name);
    if (entry.name.endsWith('.pack')) packedBytes += lstatSync(path).size;
    // A version 2 pack index: 8 bytes of header, then a 256-entry fan-out table whose last entry is the object count.
    if (entry.name.endsWith('.idx')) objects += readFileSync(path).readUInt32BE(8 + 255 * 4);
  }
  return { objects, packedBytes };
}

interface Figures {
  hwm: number;
  children: number;
  tmp: number;
}

async function once(run: number, scratch: string, repos: { calc: string; mod: string; go: string }, gitPort: number): Promise<{ figures: Map<Measured, Figures>; mirror: { objects: number; packedBytes: number } }> {
  const project = `hermetic-mem-${process.pid}-${run}`;
  const dir = join(scratch, `run-${run}`);
  await mkdir(dir, { recursive: true });
  const configFile = join(dir, 'hermetic.config.json');
  const common = { hostType: 'linux-amd64', timeoutSeconds: 600 };
  await writeFile(
    configFile,
    JSON.stringify({
      trybots: { trusted: { users: ['gopher'] } },
      repos: [
        { name: 'calc', url: repos.calc, builders: ['sh'], backfill: 1, trybot: { builders: ['sh'] } },
        { name: 'mod', url: repos.mod, builders: ['mod'], backfill: 1 },
        { name: 'go', url: `git://127.0.0.1:${gitPort}/go`, builders: ['tree'], backfill: 1, trybot: { builders: ['tree'] } },
      ],
      builders: {
        sh: { ...common, type: 'command', command: './check.sh' },
        mod: { ...common, type: 'go-module', shards: 2 },
        tree: { ...common, type: 'command', command: 'test -f src/make.bash && test -f VERSION' },
      },
    }),
  );

  const [firestoreHost, pubsubHost] = await Promise.all([emulatorHost('firestore'), emulatorHost('pubsub')]);
  const pubsub = new PubSub({ projectId: project, apiEndpoint: pubsubHost, emulatorMode: true });
  for (const topic of new Set(Object.values(triggers))) await pubsub.topic(topic).get({ autoCreate: true });
  const notify = createPubsubPublisher({ pubsub });
  const account = createTestServiceAccount();
  const gcs = await startFakeGcs({
    buckets: [bucket],
    serviceAccount: account,
    onFinalized: (object) => notifyResultLanded(notify, object),
  });
  const boot = await bootScriptGuest();
  const gce = await startFakeGce({ guest: boot.guest });
  const auth = (gce.clientOptions as unknown as { authClient: { getRequestHeaders(): Promise<Headers> } }).authClient;
  const clients: BenchClients = {
    firestoreHost,
    pubsubHost,
    storageUrl: gcs.url,
    credentials: account.credentials,
    compute: { port: (gce.clientOptions as { port?: number }).port ?? 0, authorization: (await auth.getRequestHeaders()).get('authorization') ?? '' },
  };
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '',
    HOME: dir,
    HERMETIC_PROJECT: project,
    HERMETIC_REGION: 'us-central1',
    HERMETIC_ZONE: 'us-central1-a',
    HERMETIC_BUCKET: bucket,
    HERMETIC_DASHBOARD_URL: 'https://hermetic-bench.appspot.com',
    HERMETIC_IMAGE_REPO: `us-central1-docker.pkg.dev/${project}/hermetic`,
    HERMETIC_WORKER_SA: `hermetic-worker@${project}.iam.gserviceaccount.com`,
    HERMETIC_CONFIG: configFile,
    HERMETIC_IMAGES: 'linux-amd64:bench',
    HERMETIC_BENCH_CLIENTS: JSON.stringify(clients),
    // As deployed with --github token (the dashboard, as on App Engine, builds without it); no repo here is on GitHub.
    HERMETIC_GITHUB_AUTH: 'token',
    GITHUB_TOKEN: 'bench-token',
    HERMETIC_WEBHOOK_SECRET: webhookSecret,
  };
  const served = new Map<Measured, Served>();
  for (const name of measured) served.set(name, await serve(name, env, dir));
  const sampler = setInterval(() => {
    for (const server of served.values()) {
      const pid = server.child.pid;
      if (pid === undefined) continue;
      const sum = descendants(pid).reduce((total, child) => total + highWaterMark(child), 0);
      server.childrenPeak = Math.max(server.childrenPeak, sum);
    }
  }, 50);
  const url = (name: Measured) => served.get(name)?.url ?? '';
  const relay = await startEventarcRelay({
    pubsub,
    project,
    routes: (Object.keys(triggers) as MessageFunctionName[]).map((name) => ({ topic: triggers[name], url: url(name) })),
  });
  try {
    let serial = 0;
    const event = (topic: string, data: unknown, attributes: Record<string, string> = {}) =>
      messagePublishedEvent({
        project,
        topic,
        subscription: `eventarc-us-central1-${topic}-sub`,
        messageId: `bench-${run}-${++serial}`,
        data: Buffer.from(JSON.stringify(data)),
        attributes: { [topicAttribute]: topic, ...attributes },
        publishedAt: Date.now(),
        deliveryAttempt: 1,
      });
    process.stderr.write(`  run ${run}: polling three repositories, building each\n`);
    await publishMessage(createPubsubPublisher({ pubsub }), topics.pollTick, { v: 1 });
    await buildsSettled(url('dashboard'), 3, 900_000);
    process.stderr.write(`  run ${run}: a trybot request, a reap tick, a dead letter and a webhook ping\n`);
    // Trybots on the small repository and on the Go tree, whose commit the trybot function mirrors too.
    const tries = [];
    for (const repo of ['calc', 'go']) {
      const head = (await (await fetch(`${url('dashboard')}api/builds?repo=${repo}`)).json()) as { builds: Array<{ commit: string }> };
      const request = { v: 1, repo, commit: head.builds[0]?.commit ?? '', requester: 'gopher', via: 'topic' };
      tries.push(['trybot', await post(url('trybot'), event(topics.tryRequested, request))] as const);
    }
    for (const [name, status] of [
      ...tries,
      ['reap', await post(url('reap'), event(topics.reapTick, { v: 1 }))],
      [
        'deadLetter',
        await post(
          url('deadLetter'),
          event(topics.deadLetters, { v: 1, buildId: '0123456789abcdef01234567', repo: 'calc', commit: 'f'.repeat(40), builder: 'sh' }, {
            [topicAttribute]: topics.buildRequested,
            CloudPubSubDeadLetterSourceSubscription: `projects/${project}/subscriptions/eventarc-us-central1-plan-sub`,
            CloudPubSubDeadLetterSourceSubscriptionProject: project,
            CloudPubSubDeadLetterSourceDeliveryCount: '5',
            CloudPubSubDeadLetterSourceTopicPublishTime: new Date().toISOString(),
          }),
        ),
      ],
      ['webhook', await ping(url('webhook'))],
    ] as const) {
      if (status >= 300) throw new Error(`${name} answered ${status}`);
    }
    await sleep(2000);
    process.stderr.write(`  run ${run}: builds: ${await buildsSettled(url('dashboard'), 3, 300_000)}\n`);
    for (const page of ['', 'trybots', 'dead-letters', 'api/grid']) await fetch(`${url('dashboard')}${page}`);
    if (relay.failures.length > 0) process.stderr.write(`  run ${run}: deliveries that failed (and were retried): ${relay.failures.join('; ')}\n`);
    clearInterval(sampler);
    const figures = new Map<Measured, Figures>();
    for (const [name, server] of served) {
      figures.set(name, { hwm: highWaterMark(server.child.pid ?? 0), children: server.childrenPeak, tmp: allocatedBytes(server.tmp) });
    }
    const mirrorRoot = join(served.get('poll')?.tmp ?? '', 'hermetic-git');
    const mirrorDir = readdirSync(mirrorRoot).find((name) => name.startsWith('go-'));
    return { figures, mirror: objectsOf(join(mirrorRoot, mirrorDir ?? '')) };
  } finally {
    clearInterval(sampler);
    await relay.stop();
    for (const server of served.values()) server.child.kill('SIGKILL');
    await gce.close();
    await boot.cleanup();
    await gcs.close();
    await pubsub.close();
  }
}

/** A signed `ping` delivery, as GitHub sends one when a webhook is added. */
function ping(url: string): Promise<number> {
  const body = JSON.stringify({ zen: 'Design for failure.', hook_id: 1 });
  const signature = `sha256=${createHmac('sha256', webhookSecret).update(body).digest('hex')}`;
  return post(url, body, { 'content-type': 'application/json', 'x-github-event': 'ping', 'x-github-delivery': 'bench-ping', 'x-hub-signature-256': signature });
}

const scratch = await mkdtemp(join(tmpdir(), 'hermetic-bench-memory-'));
const daemons: ChildProcess[] = [];
try {
  const repos = await makeRepos(scratch, values['go-tree']);
  // Served over git://, so the function's process tree holds only the fetching side, as against a real remote.
  const gitPort = await freePort();
  const exported = join(scratch, 'exported');
  await mkdir(exported);
  await symlink(repos.go, join(exported, 'go'));
  const daemon = spawn('git', ['daemon', '--reuseaddr', '--export-all', `--base-path=${exported}`, '--listen=127.0.0.1', `--port=${gitPort}`, exported], { stdio: 'ignore' });
  daemons.push(daemon);
  await sleep(500);

  process.stderr.write(`function-memory: ${measured.length} functions, ${runs} runs\n`);
  const all: Array<Map<Measured, Figures>> = [];
  let mirror = { objects: 0, packedBytes: 0 };
  for (let run = 1; run <= runs; run++) {
    const result = await once(run, scratch, repos, gitPort);
    all.push(result.figures);
    mirror = result.mirror;
  }

  const med = (name: Measured, field: keyof Figures) => median(all.map((figures) => figures.get(name)?.[field] ?? 0));
  console.log(`peak memory per function, MiB, median of ${runs} runs (process high-water mark + child processes + /tmp):`);
  console.log('function     process  children  /tmp   total  size by the rule (table)');
  for (const name of measured) {
    const [hwm, children, tmp] = [mib(med(name, 'hwm')), mib(med(name, 'children')), mib(med(name, 'tmp'))];
    const total = hwm + children + tmp;
    const chosen =
      name === 'dashboard'
        ? `${Object.entries(appEngineClasses).find(([, memory]) => memory >= total * headroom)?.[0] ?? 'none'} (${dashboardSize.instanceClass})`
        : `${ruleSize(total)} (${functionSizes[name].memoryMiB} MiB)`;
    console.log(`${name.padEnd(12)} ${hwm.toFixed(0).padStart(7)}  ${children.toFixed(0).padStart(8)}  ${tmp.toFixed(0).padStart(4)}  ${total.toFixed(0).padStart(6)}  ${chosen}`);
  }
  // The Go repository's whole history cannot be fetched here. The mirror in /tmp grows with the packed history; git's
  // fetch (index-pack, then the connectivity walk) by about 200 bytes an object, plus the delta base cache
  // (core.deltaBaseCacheLimit, 96 MiB by default) that a history of deltas fills and one commit of whole files does not.
  const extraGit = mib(Math.max(0, history.objects - mirror.objects) * 200) + 96;
  console.log(`the Go tree's mirror: ${mirror.objects} objects, ${mib(mirror.packedBytes).toFixed(1)} MiB packed`);
  console.log(`extrapolated to the Go repository's history, ${history.objects} objects and ${history.mib} MiB packed (/tmp grows with the pack, git by ${extraGit.toFixed(0)} MiB):`);
  for (const name of ['poll', 'launch', 'trybot'] as const) {
    const tmpPerPacked = med(name, 'tmp') / Math.max(1, mirror.packedBytes);
    const extrapolated = mib(med(name, 'hwm')) + mib(med(name, 'children')) + extraGit + history.mib * tmpPerPacked;
    console.log(`${name.padEnd(12)} ${extrapolated.toFixed(0)} MiB: ${ruleSize(extrapolated)} by the rule (table: ${functionSizes[name].memoryMiB} MiB)`);
  }
} finally {
  for (const daemon of daemons) daemon.kill();
  await rm(scratch, { recursive: true, force: true });
}
process.exit(0);
