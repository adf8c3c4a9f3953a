import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import { containerName, createDockerCompute, type DockerCompute, type DockerComputeOptions } from '../../shared/adapters/docker/docker-compute.ts';
import { blobKeys, TaskResult } from '../../shared/core/model/wire.ts';
import type { WorkerExit, WorkerRequest } from '../../shared/ports/compute.ts';
import type { Fields, Logger } from '../../shared/ports/log.ts';
import { newTaskId } from '../contract/compute.contract.ts';
import { dockerAnswers, testHostType, testWorkerImage } from '../helpers/agent-test-image.ts';
import { startFakeBlobServer, taskSpecFor, uploadedLog, type FakeBlobServer, type TestSpecOptions } from '../helpers/fake-blob-server.ts';
import { processesWithArgument } from '../helpers/proc-scan.ts';
import { waitUntil } from '../helpers/wait.ts';

const docker = new Docker();
const available = await dockerAnswers(docker);
const skip = available ? false : 'no Docker engine answers (start dockerd, or set DOCKER_HOST)';
const hostType = testHostType;
const network = `hermetic-test-${randomBytes(4).toString('hex')}`;
const deployment = randomBytes(4).toString('hex');

let image: string;
let gatewayIp: string;
let server: FakeBlobServer;

before(
  async () => {
    if (!available) return;
    image = await testWorkerImage(docker);
    // The first adapter makes the network; the fake blob server then listens on its gateway, as the runtime will.
    const probe = await createDockerCompute({ docker, images: new Map([[hostType, image]]), deployment, network, onExit: () => {} });
    gatewayIp = probe.gatewayIp;
    await probe.close();
    server = await startFakeBlobServer({ host: gatewayIp });
  },
  { timeout: 600_000 },
);
after(async () => {
  if (!available) return;
  await server?.close();
  await docker.getNetwork(network).remove().catch(() => undefined);
});

/** An exit as onExit saw it, with the host processes still running then that have a watched argument. */
interface SeenExit extends WorkerExit {
  leftovers: number[];
}

interface Setup {
  compute: DockerCompute;
  exits: SeenExit[];
  /** When onExit was called, by task ID. */
  exitTimes: Map<string, number>;
  logged: { level: string; event: string; fields: Fields }[];
  watched: string[];
  request(taskId: string, spec: TestSpecOptions, options?: { deadline?: number; labels?: Record<string, string> }): WorkerRequest;
  exitOf(taskId: string): Promise<SeenExit>;
}

async function setup(extra: Partial<Pick<DockerComputeOptions, 'images' | 'limits' | 'networkAccess' | 'deployment'>> = {}): Promise<Setup> {
  const exits: SeenExit[] = [];
  const exitTimes = new Map<string, number>();
  const watched: string[] = [];
  const logged: Setup['logged'] = [];
  const logger: Logger = {
    info: (event, fields = {}) => logged.push({ level: 'info', event, fields }),
    warn: (event, fields = {}) => logged.push({ level: 'warn', event, fields }),
    error: (event, fields = {}) => logged.push({ level: 'error', event, fields }),
  };
  const compute = await createDockerCompute({
    docker,
    images: new Map([[hostType, image]]),
    deployment,
    network,
    logger,
    onExit: (exit) => {
      exitTimes.set(exit.taskId, Date.now());
      exits.push({ ...exit, leftovers: watched.flatMap((argument) => processesWithArgument(argument)) });
    },
    ...extra,
  });
  return {
    compute,
    exits,
    exitTimes,
    logged,
    watched,
    request: (taskId, spec, options = {}) => ({
      taskId,
      hostType,
      spec: taskSpecFor(server, taskId, spec),
      deadline: options.deadline ?? Date.now() + 60_000,
      labels: options.labels ?? { test: 'docker-compute' },
    }),
    exitOf: (taskId) => waitUntil(() => exits.find((exit) => exit.taskId === taskId), `onExit of ${taskId}`),
  };
}

function resultOf(taskId: string): TaskResult | undefined {
  const body = server.objects.get(blobKeys.result(taskId));
  return body === undefined ? undefined : TaskResult.parse(JSON.parse(body.toString('utf8')));
}

/** Containers, running or not, of a task (of this file's deployment, unless another is named). */
async function containersOf(taskId: string, of = deployment): Promise<Docker.ContainerInfo[]> {
  const name = containerName(of, taskId);
  const found = await docker.listContainers({ all: true, filters: { name: [name] } });
  return found.filter((info) => info.Names.includes(`/${name}`));
}

/** A sleep duration no other process on the machine has as its argument. */
function uniqueSleep(): string {
  return `${3000 + Math.floor(Math.random() * 1000)}.${Date.now() % 100000}`;
}

describe('Docker compute', { skip }, () => {
  test('runs a task: the agent fetches the source through the gateway, the result arrives, the container goes', async () => {
    const s = await setup();
    try {
      const taskId = newTaskId();
      await s.compute.start(s.request(taskId, { steps: [['cat', 'README'], ['sh', '-c', 'echo "cwd=$(pwd)"']] }));
      const exit = await s.exitOf(taskId);
      assert.deepEqual(exit, { taskId, reason: 'exited', code: 0, signal: null, leftovers: [] });
      assert.equal(resultOf(taskId)?.status, 'passed');
      const log = uploadedLog(server, taskId);
      assert.match(log, /a test source tree/);
      assert.match(log, /cwd=\/work\/src\n/);
      assert.deepEqual(await containersOf(taskId), []);
      assert.deepEqual(await s.compute.list(), []);
      assert.ok(!s.logged.some((entry) => entry.level !== 'info'), JSON.stringify(s.logged));
    } finally {
      await s.compute.close();
    }
  });

  test("a step's background processes, even one that left with setsid, do not outlive the step", async () => {
    const s = await setup();
    try {
      const taskId = newTaskId();
      const inGroup = uniqueSleep();
      const escaped = uniqueSleep();
      s.watched.push(inGroup, escaped);
      const listSleeps = `for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '^sleep ' || true`;
      await s.compute.start(
        s.request(taskId, {
          steps: [
            ['sh', '-c', `sleep ${inGroup} & echo started`],
            // The listing proves itself while the escaped sleep is running: the step's own `sleep 0.3` is done then.
            ['sh', '-c', `setsid sleep ${escaped} </dev/null >/dev/null 2>&1 & sleep 0.3; echo "detached, sleeps=$(${listSleeps})"`],
            ['sh', '-c', `echo "after, sleeps=$(${listSleeps})"`],
          ],
        }),
      );
      const exit = await s.exitOf(taskId);
      assert.equal(exit.reason, 'exited');
      assert.deepEqual(exit.leftovers, []);
      assert.equal(resultOf(taskId)?.status, 'passed');
      assert.match(uploadedLog(server, taskId), /started\n[^]*detached, sleeps=1\n[^]*after, sleeps=0\n/);
      assert.deepEqual(await containersOf(taskId), []);
    } finally {
      await s.compute.close();
    }
  });

  test('a hanging task is killed at its deadline: reason deadline, container gone', async () => {
    const s = await setup();
    try {
      const taskId = newTaskId();
      const hang = uniqueSleep();
      s.watched.push(hang);
      const started = Date.now();
      // The agent's own deadline is far away: only the adapter's can end this worker.
      await s.compute.start(s.request(taskId, { steps: [['sleep', hang]] }, { deadline: Date.now() + 2000 }));
      const exit = await s.exitOf(taskId);
      assert.ok(Date.now() - started >= 1900, `killed after ${Date.now() - started}ms`);
      assert.deepEqual(exit, { taskId, reason: 'deadline', code: null, signal: 'SIGKILL', leftovers: [] });
      assert.equal(resultOf(taskId), undefined);
      assert.deepEqual(await containersOf(taskId), []);
      assert.ok(s.logged.some((entry) => entry.level === 'warn' && entry.event === 'worker.exited'));
    } finally {
      await s.compute.close();
    }
  });

  test("the agent's soft deadline still stops an isolated step first: a timed-out result, then a clean exit", async () => {
    const s = await setup();
    try {
      const taskId = newTaskId();
      // A step is PID 1 of its namespace, where SIGTERM without a handler is ignored: it takes the SIGKILL a second
      // later, which the default grace (3 s here: what stopping takes) leaves room for.
      const deadline = Date.now() + 15_000;
      await s.compute.start(s.request(taskId, { steps: [['sleep', '60']], deadline }, { deadline }));
      const exit = await s.exitOf(taskId);
      assert.deepEqual([exit.reason, exit.code], ['exited', 0]);
      assert.equal(resultOf(taskId)?.status, 'timed-out');
      assert.match(uploadedLog(server, taskId), /timed out: the task's deadline is near/);
    } finally {
      await s.compute.close();
    }
  });

  test('a duplicate start, concurrent, repeated or from a second adapter, makes one container', async () => {
    const s = await setup();
    const second = await setup();
    try {
      const taskId = newTaskId();
      const request = s.request(taskId, { steps: [['sleep', '300']] });
      await Promise.all([s.compute.start(request), s.compute.start(request), s.compute.start(request)]);
      await s.compute.start(request);
      // Another runtime on the same engine: the container's name says the task had a worker.
      await second.compute.start(request);
      assert.equal((await containersOf(taskId)).length, 1);
      assert.ok(second.logged.some((entry) => entry.event === 'worker.duplicate-start'));
      await s.compute.stop(taskId);
      await s.compute.start(request);
      assert.deepEqual(await containersOf(taskId), []);
      assert.equal(s.exits.length, 1);
    } finally {
      await s.compute.close();
      await second.compute.close();
    }
  });

  test('--isolate-steps: a step is uid 1000 with no capabilities, no network, no spec; the agent is not', async () => {
    const s = await setup();
    try {
      const taskId = newTaskId();
      const { port } = new URL(server.baseUrl);
      const script = [
        'echo "ids=$(id -u):$(id -g):$(id -G)"',
        "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status | tr -s '\\t' ' '",
        'ls -l /etc/hermetic/task.json | cut -c1-10',
        `echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')"`,
        // The agent read its spec from there; the step may not.
        'cat /etc/hermetic/task.json >/dev/null 2>&1 && echo spec=readable || echo spec=unreadable',
        'cat /proc/1/environ >/dev/null 2>&1 && echo agent-env=readable || echo agent-env=unreadable',
        `timeout 3 bash -c 'echo > /dev/tcp/${gatewayIp}/${port}' 2>/dev/null && echo blob=reachable || echo blob=unreachable`,
        'echo "home=$HOME owners=$(stat -c %u "$HOME"):$(stat -c %u .):$(stat -c %u README)"',
        'touch "$HOME/x" README.new && echo writable=yes',
      ].join('\n');
      await s.compute.start(s.request(taskId, { steps: [['sh', '-c', script]] }));
      const exit = await s.exitOf(taskId);
      assert.equal(exit.code, 0);
      const log = uploadedLog(server, taskId);
      assert.equal(resultOf(taskId)?.status, 'passed', log);
      assert.match(log, /^ids=1000:1000:1000$/m);
      for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.match(log, new RegExp(`^${set}: 0{16}$`, 'm'));
      assert.match(log, /^NoNewPrivs: 1$/m);
      assert.match(log, /^ifaces=lo $/m);
      assert.match(log, /^-r--------$/m);
      assert.match(log, /^spec=unreadable$/m);
      assert.match(log, /^agent-env=unreadable$/m);
      assert.match(log, /^blob=unreachable$/m);
      assert.match(log, /^home=\/work\/home owners=1000:1000:1000$/m);
      assert.match(log, /^writable=yes$/m);
    } finally {
      await s.compute.close();
    }
  });

  test('a request that names directories gets them read-only at the same paths, and nothing else', async () => {
    const s = await setup();
    const mirror = await mkdtemp(join(tmpdir(), 'hermetic-mirror-'));
    try {
      const taskId = newTaskId();
      await s.compute.start({ ...s.request(taskId, { steps: [['sleep', '300']] }), readOnlyPaths: [mirror] });
      const info = await docker.getContainer(containerName(deployment, taskId)).inspect();
      assert.deepEqual(info.HostConfig.Binds, [`${mirror}:${mirror}:ro`]);
      assert.deepEqual(info.Mounts.map((mount) => [mount.Source, mount.Destination, mount.RW]), [[mirror, mirror, false]]);
    } finally {
      await s.compute.close();
      await rm(mirror, { recursive: true, force: true });
    }
  });

  test('limits, capabilities and the network are applied; no mounts, no spec in the environment', async () => {
    const s = await setup({ limits: { cpus: 1, memoryBytes: 512 * 1024 ** 2, pids: 300 } });
    try {
      const taskId = newTaskId();
      await s.compute.start(s.request(taskId, { steps: [['sleep', '300']] }, { labels: { build: 'b1', task: taskId } }));
      const info = await docker.getContainer(containerName(deployment, taskId)).inspect();
      assert.equal(info.HostConfig.NanoCpus, 1e9);
      assert.equal(info.HostConfig.Memory, 512 * 1024 ** 2);
      assert.equal(info.HostConfig.PidsLimit, 300);
      assert.deepEqual(info.HostConfig.CapDrop, ['ALL']);
      assert.deepEqual([...(info.HostConfig.CapAdd ?? [])].sort(), ['CHOWN', 'DAC_OVERRIDE', 'KILL', 'NET_ADMIN', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_ADMIN']);
      assert.deepEqual(info.HostConfig.SecurityOpt, ['no-new-privileges']);
      assert.equal(info.HostConfig.Init, false);
      assert.equal(info.HostConfig.Privileged, false);
      assert.equal(info.HostConfig.NetworkMode, network);
      assert.deepEqual(info.Mounts, []);
      assert.deepEqual(info.HostConfig.Binds ?? [], []);
      assert.ok(!info.Config.Env.some((entry) => entry.includes(taskId) || entry.includes('signature')), info.Config.Env.join(' '));
      assert.equal(info.Config.Labels['hermetic.task'], taskId);
      assert.equal(info.Config.Labels['hermetic.build'], 'b1');
      assert.match(info.Config.Labels['hermetic.deadline'] ?? '', /^\d+$/);
      const listed = await s.compute.list();
      assert.deepEqual(listed.map((worker) => worker.labels), [{ build: 'b1', task: taskId }]);
      await assert.rejects(
        s.compute.start({ ...s.request(newTaskId(), { steps: [['true']] }), labels: { deadline: 'x' } }),
        /label "deadline"/,
      );
    } finally {
      await s.compute.close();
    }
  });

  test('an image that is not there: start rejects naming it, starts nothing, and a retry may start the task', async () => {
    const s = await setup({ images: new Map([[hostType, 'hermetic-test/no-such-image:0']]) });
    const retry = await setup();
    try {
      const taskId = newTaskId();
      const request = s.request(taskId, { steps: [['true']] });
      await assert.rejects(s.compute.start(request), new RegExp(`hermetic-test/no-such-image:0 of host type ${hostType}`));
      assert.deepEqual(await containersOf(taskId), []);
      await retry.compute.start(request);
      assert.equal((await retry.exitOf(taskId)).code, 0);
      assert.equal(resultOf(taskId)?.status, 'passed');
    } finally {
      await s.compute.close();
      await retry.compute.close();
    }
  });

  test('networkAccess: the worker is on the default bridge and its steps keep the network', async () => {
    const s = await setup({ networkAccess: (request) => request.labels.net === 'yes' });
    try {
      const taskId = newTaskId();
      const { port } = new URL(server.baseUrl);
      const script = [
        `echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ')"`,
        `timeout 3 bash -c 'echo > /dev/tcp/${gatewayIp}/${port}' 2>/dev/null && echo blob=reachable || echo blob=unreachable`,
        'echo "uid=$(id -u)"',
      ].join('\n');
      await s.compute.start(s.request(taskId, { steps: [['sh', '-c', script]] }, { labels: { net: 'yes' } }));
      const info = await docker.getContainer(containerName(deployment, taskId)).inspect().catch(() => undefined);
      if (info !== undefined) assert.equal(info.HostConfig.NetworkMode, 'bridge');
      const exit = await s.exitOf(taskId);
      const log = uploadedLog(server, taskId);
      assert.equal(exit.code, 0, log);
      assert.match(log, /^ifaces=eth0 lo $/m);
      assert.match(log, /^blob=reachable$/m);
      assert.match(log, /^uid=1000$/m);
    } finally {
      await s.compute.close();
    }
  });

  test('a new adapter adopts what a dead one left: running ones are watched to their deadline, exited ones reported', async () => {
    const running = newTaskId();
    const finished = newTaskId();
    const hang = uniqueSleep();
    const deadline = Date.now() + 12_000;
    const requests = [
      { taskId: running, hostType, spec: taskSpecFor(server, running, { steps: [['sleep', hang]] }), deadline, labels: { build: 'adopted' } },
      { taskId: finished, hostType, spec: taskSpecFor(server, finished, { steps: [['true']] }), deadline, labels: {} },
    ];
    // An earlier runtime: starts both workers, then dies without closing anything.
    await runAndKill(requests);
    await waitUntil(async () => (await containersOf(finished))[0]?.State === 'exited', 'the quick worker exits');
    assert.ok(resultOf(finished) !== undefined);

    const s = await setup();
    try {
      const reported = await s.exitOf(finished);
      s.watched.push(hang);
      assert.deepEqual(reported, { taskId: finished, reason: 'exited', code: 0, signal: null, leftovers: [] });
      assert.deepEqual(await containersOf(finished), []);
      assert.deepEqual(await s.compute.list(), [{ taskId: running, deadline, labels: { build: 'adopted' } }]);
      await s.compute.start(requests[0] as WorkerRequest);
      assert.equal((await containersOf(running)).length, 1, 'an adopted task gets no second worker');
      const killed = await s.exitOf(running);
      assert.ok(Date.now() >= deadline - 100, 'not before its deadline');
      assert.deepEqual(killed, { taskId: running, reason: 'deadline', code: null, signal: 'SIGKILL', leftovers: [] });
      assert.deepEqual(await containersOf(running), []);
      assert.deepEqual(await s.compute.list(), []);
    } finally {
      await s.compute.close();
    }
  });

  test('two deployments on one engine run the same task each, and neither adopts, lists or stops the other\'s', async () => {
    const taskId = newTaskId();
    const hang = uniqueSleep();
    const other = randomBytes(4).toString('hex');
    const mine = await setup();
    const theirs = await setup({ deployment: other });
    try {
      // The same repo, commit and builder give both the same task ID.
      await mine.compute.start(mine.request(taskId, { steps: [['sleep', hang]] }));
      await theirs.compute.start(theirs.request(taskId, { steps: [['true']] }));
      const finished = await theirs.exitOf(taskId);
      assert.deepEqual(finished, { taskId, reason: 'exited', code: 0, signal: null, leftovers: [] });
      assert.ok(!theirs.logged.some((entry) => entry.event === 'worker.duplicate-start'), JSON.stringify(theirs.logged));
      assert.equal((await containersOf(taskId)).length, 1, 'the first deployment\'s worker still runs');
      assert.deepEqual((await theirs.compute.list()).map((worker) => worker.taskId), []);
      // A third runtime of the other deployment, as after a restart, adopts nothing of the first's.
      const restarted = await setup({ deployment: other });
      assert.ok(!restarted.logged.some((entry) => entry.event === 'worker.adopted'), JSON.stringify(restarted.logged));
      await restarted.compute.close();
      assert.equal((await containersOf(taskId)).length, 1, 'closing another deployment stops nothing of this one\'s');
    } finally {
      await theirs.compute.close();
      await mine.compute.close();
    }
    assert.deepEqual(await containersOf(taskId, other), []);
  });

  test('close() kills and removes every container, reporting each once', async () => {
    const s = await setup();
    const ids = [newTaskId(), newTaskId()];
    const sleeps = [uniqueSleep(), uniqueSleep()];
    s.watched.push(...sleeps);
    for (const [index, taskId] of ids.entries()) {
      await s.compute.start(s.request(taskId, { steps: [['sh', '-c', `setsid sleep ${sleeps[index]} & echo started; sleep 300`]] }));
    }
    await waitUntil(() => ids.every((taskId) => /started/.test(uploadedLog(server, taskId))), 'the steps start');
    await s.compute.close();
    assert.deepEqual(
      s.exits.map((exit) => [exit.taskId, exit.reason, exit.leftovers.length]).sort(),
      ids.map((taskId) => [taskId, 'exited', 0]).sort(),
    );
    for (const taskId of ids) assert.deepEqual(await containersOf(taskId), []);
    const ours = await docker.listContainers({ all: true, filters: { label: [`hermetic.deployment=${deployment}`] } });
    assert.deepEqual(ours, []);
    await assert.rejects(s.compute.start(s.request(newTaskId(), { steps: [['true']] })), /closed/);
  });
});

describe('agent program flags for containers', () => {
  const agentMain = new URL('../../shared/agent/main.ts', import.meta.url).pathname;

  function runAgentMain(args: string[]): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [agentMain, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr }));
    });
  }

  test('--spec FILE: the spec comes from the file (stdin is closed); a missing file is bad usage', async () => {
    const local = await startFakeBlobServer();
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-agent-spec-'));
    try {
      const spec = taskSpecFor(local, newTaskId(), { steps: [['echo', 'spec from a file']] });
      await writeFile(join(dir, 'task.json'), JSON.stringify(spec), { mode: 0o400 });
      const ok = await runAgentMain(['--workdir', join(dir, 'work'), '--spec', join(dir, 'task.json')]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(uploadedLog(local, spec.taskId), /spec from a file/);
      const missing = await runAgentMain(['--workdir', join(dir, 'work'), '--spec', join(dir, 'nothing.json')]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /cannot read the task spec/);
      const network = await runAgentMain(['--workdir', join(dir, 'work'), '--spec', join(dir, 'task.json'), '--step-network']);
      assert.equal(network.code, 2);
      assert.match(network.stderr, /--step-network needs --isolate-steps/);
    } finally {
      await local.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});


/** Runs an adapter in a child process that starts the requests and is then killed with SIGKILL. */
async function runAndKill(requests: WorkerRequest[]): Promise<void> {
  const adapter = new URL('../../shared/adapters/docker/docker-compute.ts', import.meta.url).href;
  const code = `
    import Docker from 'dockerode';
    import { createDockerCompute } from ${JSON.stringify(adapter)};
    const [deployment, network, hostType, image, json] = process.argv.slice(1);
    const compute = await createDockerCompute({ docker: new Docker(), images: new Map([[hostType, image]]), deployment, network, onExit: () => {} });
    for (const request of JSON.parse(json)) await compute.start(request);
    process.stdout.write('started\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, deployment, network, hostType, image, JSON.stringify(requests)], {
    cwd: new URL('../..', import.meta.url),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (data: Buffer) => {
      if (data.toString().includes('started')) resolve();
    });
    child.on('error', reject);
    child.on('exit', (status) => reject(new Error(`the first adapter's process exited ${status} before starting its workers`)));
  });
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
}
