import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readlinkSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createProcessSandbox, type Isolation, type ProcessSandbox } from '../../shared/adapters/local/process-sandbox.ts';
import { blobKeys, TaskResult } from '../../shared/core/model/wire.ts';
import type { WorkerExit, WorkerRequest } from '../../shared/ports/compute.ts';
import type { Fields, Logger } from '../../shared/ports/log.ts';
import { newTaskId } from '../contract/compute.contract.ts';
import { startFakeBlobServer, taskSpecFor, uploadedLog, type FakeBlobServer, type TestSpecOptions } from '../helpers/fake-blob-server.ts';
import { occupyThreadpool } from '../helpers/busy-threadpool.ts';
import { processesOfWorker, processesWithArgument, scanProcesses } from '../helpers/proc-scan.ts';
import { waitUntil } from '../helpers/wait.ts';

let server: FakeBlobServer;
let root: string;

before(async () => {
  server = await startFakeBlobServer();
  root = await mkdtemp(join(tmpdir(), 'hermetic-sandbox-test-'));
});
after(async () => {
  await server.close();
  await rm(root, { recursive: true, force: true });
});

/** An exit as onExit saw it, with what was still running at that very moment. */
interface SeenExit extends WorkerExit {
  leftovers: number[];
}

interface Setup {
  sandbox: ProcessSandbox;
  workRoot: string;
  exits: SeenExit[];
  logged: { level: string; event: string; fields: Fields }[];
  /** Arguments whose processes must all be gone when onExit runs. */
  watched: string[];
  request(taskId: string, spec: TestSpecOptions, options?: { deadline?: number }): WorkerRequest;
  exitOf(taskId: string): Promise<SeenExit>;
}

async function setup(
  isolation: Isolation,
  options: { workRoot?: string; keepWorkDirs?: boolean; agentCommand?: string[]; maxWorkers?: number } = {},
): Promise<Setup> {
  const workRoot = options.workRoot ?? (await mkdtemp(join(root, 'workers-')));
  const exits: SeenExit[] = [];
  const watched: string[] = [];
  const logged: Setup['logged'] = [];
  const logger: Logger = {
    info: (event, fields = {}) => logged.push({ level: 'info', event, fields }),
    warn: (event, fields = {}) => logged.push({ level: 'warn', event, fields }),
    error: (event, fields = {}) => logged.push({ level: 'error', event, fields }),
  };
  const sandbox = await createProcessSandbox({
    workRoot,
    isolation,
    logger,
    onExit: (exit) => {
      // Checked synchronously inside onExit: the worker's processes must already be gone.
      const leftovers = [
        ...processesOfWorker(join(workRoot, exit.taskId)),
        ...watched.flatMap((argument) => processesWithArgument(argument)),
      ];
      exits.push({ ...exit, leftovers });
    },
    ...(options.keepWorkDirs === undefined ? {} : { keepWorkDirs: options.keepWorkDirs }),
    ...(options.agentCommand === undefined ? {} : { agentCommand: options.agentCommand }),
    ...(options.maxWorkers === undefined ? {} : { maxWorkers: options.maxWorkers }),
  });
  return {
    sandbox,
    workRoot,
    exits,
    logged,
    watched,
    request: (taskId, spec, requestOptions = {}) => ({
      taskId,
      hostType: 'host',
      spec: taskSpecFor(server, taskId, spec),
      deadline: requestOptions.deadline ?? Date.now() + 60_000,
      labels: { test: 'process-sandbox' },
    }),
    exitOf: (taskId) => waitUntil(() => exits.find((seen) => seen.taskId === taskId), `onExit of ${taskId}`, { everyMs: 20 }),
  };
}

function resultOf(taskId: string): TaskResult | undefined {
  const body = server.objects.get(blobKeys.result(taskId));
  return body === undefined ? undefined : TaskResult.parse(JSON.parse(body.toString('utf8')));
}

/** A sleep duration no other process on the machine has as its argument. */
function uniqueSleep(): string {
  return `${3000 + Math.floor(Math.random() * 1000)}.${Date.now() % 100000}`;
}

const available = await pidNamespacesWork();
const modes: Isolation[] = available ? ['pid-namespace', 'process-group'] : ['process-group'];

for (const isolation of modes) {
  describe(`process sandbox (${isolation})`, () => {
    test('two sandboxes on other work roots (two deployments) run the same task each; reaping one stops nothing of the other', async () => {
      const first = await setup(isolation);
      const second = await setup(isolation);
      try {
        const taskId = newTaskId();
        const hang = uniqueSleep();
        await first.sandbox.start(first.request(taskId, { steps: [['sleep', hang]] }));
        await waitUntil(() => processesWithArgument(hang).length > 0, 'the first worker runs');
        await second.sandbox.start(second.request(taskId, { steps: [['true']] }));
        const exit = await second.exitOf(taskId);
        assert.deepEqual([exit.reason, exit.code, exit.leftovers], ['exited', 0, []]);
        assert.ok(processesWithArgument(hang).length > 0, "the first deployment's worker still runs");
        assert.deepEqual(first.exits, []);
      } finally {
        await first.sandbox.close();
        await second.sandbox.close();
      }
    });

    test('runs a task with the real agent: the result arrives, the work dir is emptied', async () => {
      const s = await setup(isolation);
      try {
        const taskId = newTaskId();
        await s.sandbox.start(s.request(taskId, { steps: [['cat', 'README'], ['sh', '-c', 'echo "cwd=$(pwd)"']] }));
        const exit = await s.exitOf(taskId);
        assert.deepEqual(exit, { taskId, reason: 'exited', code: 0, signal: null, leftovers: [] });
        const result = resultOf(taskId);
        assert.equal(result?.status, 'passed');
        assert.equal(result?.steps.length, 2);
        const log = uploadedLog(server, taskId);
        assert.match(log, /a test source tree/);
        assert.match(log, new RegExp(`cwd=${escape(join(s.workRoot, taskId, 'src'))}\\n`));
        assert.deepEqual(await readdir(join(s.workRoot, taskId)), [], 'emptied, kept as the record of the start');
        assert.deepEqual(await s.sandbox.list(), []);
        assert.deepEqual(
          s.logged.filter((entry) => entry.event === 'sandbox.isolation').map((entry) => entry.fields.isolation),
          [isolation],
        );
      } finally {
        await s.sandbox.close();
      }
    });

    test('leaves no background process behind, even one that left with setsid', async () => {
      const s = await setup(isolation);
      try {
        const taskId = newTaskId();
        const inGroup = uniqueSleep();
        const escaped = uniqueSleep();
        s.watched.push(inGroup, escaped);
        await s.sandbox.start(
          s.request(taskId, {
            steps: [
              ['sh', '-c', `sleep ${inGroup} & echo started`],
              // The pause lets setsid happen before the step ends and the agent kills the step's group.
              ['sh', '-c', `setsid sleep ${escaped} </dev/null >/dev/null 2>&1 & sleep 0.3; echo detached`],
              ['sh', '-c', 'sleep 0.2; echo done'],
            ],
          }),
        );
        const exit = await s.exitOf(taskId);
        assert.equal(exit.reason, 'exited');
        assert.deepEqual(exit.leftovers, []);
        assert.equal(resultOf(taskId)?.status, 'passed');
        assert.match(uploadedLog(server, taskId), /started\n[^]*detached\n[^]*done\n/);
      } finally {
        await s.sandbox.close();
      }
    });

    test('a hanging task is killed at the deadline: reason deadline, nothing left', async () => {
      const s = await setup(isolation);
      try {
        const taskId = newTaskId();
        const hang = uniqueSleep();
        s.watched.push(hang);
        const started = Date.now();
        // The agent's own deadline is far away: only the sandbox's can end this worker.
        await s.sandbox.start(
          s.request(taskId, { steps: [['sh', '-c', `setsid sleep ${hang} & sleep ${hang}`]] }, { deadline: Date.now() + 1500 }),
        );
        const exit = await s.exitOf(taskId);
        assert.ok(Date.now() - started >= 1400, `killed after ${Date.now() - started}ms`);
        assert.equal(exit.reason, 'deadline');
        assert.deepEqual(exit.leftovers, []);
        assert.equal(resultOf(taskId), undefined, 'killed before it could upload a result');
        assert.deepEqual(await s.sandbox.list(), []);
      } finally {
        await s.sandbox.close();
      }
    });

    test("the agent's soft deadline comes first when both deadlines agree: a timed-out result", async () => {
      const s = await setup(isolation);
      try {
        const taskId = newTaskId();
        // Long enough that the agent's grace covers stopping and uploading even when it starts late on a busy machine.
        const deadline = Date.now() + 6000;
        await s.sandbox.start(s.request(taskId, { steps: [['sleep', '60']], deadline }, { deadline }));
        const exit = await s.exitOf(taskId);
        assert.equal(exit.reason, 'exited');
        assert.equal(exit.code, 0);
        assert.equal(resultOf(taskId)?.status, 'timed-out');
        assert.match(uploadedLog(server, taskId), /timed out: the task's deadline is near/);
      } finally {
        await s.sandbox.close();
      }
    });

    test('a duplicate start runs one worker, even after exit and after a restart', async () => {
      const s = await setup(isolation);
      const counter = join(s.workRoot, `..`, `runs-${newTaskId()}`);
      const taskId = newTaskId();
      const request = s.request(taskId, { steps: [['sh', '-c', 'echo run >> "$COUNTER"; sleep 0.3']], env: { COUNTER: counter } });
      try {
        await Promise.all([s.sandbox.start(request), s.sandbox.start(request)]);
        await s.sandbox.start(request);
        assert.equal((await s.sandbox.list()).length, 1);
        await s.exitOf(taskId);
        await s.sandbox.start(request);
        assert.deepEqual(await s.sandbox.list(), []);
      } finally {
        await s.sandbox.close();
      }
      const restarted = await setup(isolation, { workRoot: s.workRoot });
      try {
        await restarted.sandbox.start(request);
        assert.deepEqual(await restarted.sandbox.list(), []);
        assert.ok(restarted.logged.some((entry) => entry.event === 'worker.duplicate-start'));
      } finally {
        await restarted.sandbox.close();
      }
      await sleep(300);
      assert.equal(await readFile(counter, 'utf8'), 'run\n');
      assert.equal(s.exits.length + restarted.exits.length, 1);
      assert.equal(server.putsOf(blobKeys.result(taskId)).length, 1);
    });

    test('close() during a run kills everything and reports each worker once', async () => {
      const s = await setup(isolation);
      const ids = [newTaskId(), newTaskId()];
      const sleeps = [uniqueSleep(), uniqueSleep()];
      s.watched.push(...sleeps);
      for (const [index, taskId] of ids.entries()) {
        const arg = sleeps[index] ?? '';
        await s.sandbox.start(s.request(taskId, { steps: [['sh', '-c', `setsid sleep ${arg} & echo started; sleep ${arg}`]] }));
      }
      await waitUntil(() => ids.every((taskId) => /started/.test(uploadedLog(server, taskId))), 'the steps start');
      await s.sandbox.close();
      assert.deepEqual(s.exits.map((exit) => exit.taskId).sort(), [...ids].sort());
      for (const exit of s.exits) {
        assert.equal(exit.reason, 'exited');
        assert.equal(exit.signal, 'SIGKILL');
        assert.deepEqual(exit.leftovers, []);
      }
      for (const arg of sleeps) assert.deepEqual(processesWithArgument(arg), []);
      await assert.rejects(s.sandbox.start(s.request(newTaskId(), { steps: [['true']] })), /closed/);
    });

    test('stop() kills a running worker', async () => {
      const s = await setup(isolation);
      try {
        const taskId = newTaskId();
        await s.sandbox.start(s.request(taskId, { steps: [['sleep', '60']] }));
        await s.sandbox.stop(taskId);
        assert.equal(s.exits.length, 1);
        assert.deepEqual(s.exits[0], { taskId, reason: 'exited', code: null, signal: 'SIGKILL', leftovers: [] });
      } finally {
        await s.sandbox.close();
      }
    });

    test('the environment is scrubbed: a step sees only the sandbox variables and its own', async () => {
      process.env.HERMETIC_SANDBOX_TEST_SECRET = 'must-not-leak';
      const s = await setup(isolation);
      try {
        const taskId = newTaskId();
        await s.sandbox.start(s.request(taskId, { steps: [['env']], env: { FROM_SPEC: 'yes' } }));
        await s.exitOf(taskId);
        const log = uploadedLog(server, taskId);
        assert.doesNotMatch(log, /HERMETIC_SANDBOX_TEST_SECRET|must-not-leak/);
        const dir = join(s.workRoot, taskId);
        const vars = new Map(
          log
            .split('\n')
            .filter((line) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(line))
            .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
        );
        assert.deepEqual([...vars.keys()].sort(), [
          'FROM_SPEC',
          'HERMETIC_ATTEMPT',
          'HERMETIC_TASK_ID',
          'HERMETIC_WORKER',
          'HOME',
          'LANG',
          'PATH',
          'TMPDIR',
        ]);
        assert.equal(vars.get('HOME'), join(dir, 'home'));
        assert.equal(vars.get('TMPDIR'), join(dir, 'tmp'));
        assert.equal(vars.get('LANG'), 'C.UTF-8');
        assert.equal(vars.get('HERMETIC_WORKER'), dir);
        assert.equal(vars.get('PATH'), process.env.PATH);
      } finally {
        delete process.env.HERMETIC_SANDBOX_TEST_SECRET;
        await s.sandbox.close();
      }
    });

    test('refuses another host type, naming it, and starts nothing', async () => {
      const s = await setup(isolation);
      try {
        const taskId = newTaskId();
        await assert.rejects(s.sandbox.start({ ...s.request(taskId, { steps: [['true']] }), hostType: 'linux-arm64' }), /"linux-arm64"/);
        assert.equal(existsSync(join(s.workRoot, taskId)), false);
      } finally {
        await s.sandbox.close();
      }
    });

    test('keepWorkDirs keeps the files; an agent failure is logged with the tail of agent.log', async () => {
      const s = await setup(isolation, { keepWorkDirs: true });
      try {
        const taskId = newTaskId();
        server.failPuts(blobKeys.result(taskId), 403, Number.POSITIVE_INFINITY);
        await s.sandbox.start(s.request(taskId, { steps: [['true']] }));
        const exit = await s.exitOf(taskId);
        assert.equal(exit.code, 1);
        const agentLog = await readFile(join(s.workRoot, taskId, 'agent.log'), 'utf8');
        assert.match(agentLog, /cannot upload the result/);
        assert.ok(existsSync(join(s.workRoot, taskId, 'src', 'README')));
        const warning = s.logged.find((entry) => entry.event === 'worker.exited' && entry.level === 'warn');
        assert.match(String(warning?.fields.agentLog), /cannot upload the result/);
      } finally {
        await s.sandbox.close();
      }
    });
  });
}

describe('process sandbox: isolation specifics', () => {
  test('an agent that cannot be started: start rejects and a retry may start it', { skip: false }, async () => {
    const workRoot = await mkdtemp(join(root, 'workers-'));
    const broken = await setup('process-group', { workRoot, agentCommand: [join(root, 'no-such-agent')] });
    const taskId = newTaskId();
    const request = broken.request(taskId, { steps: [['true']] });
    try {
      await assert.rejects(broken.sandbox.start(request), /cannot start a worker.*ENOENT/);
      assert.equal(existsSync(join(workRoot, taskId)), false);
    } finally {
      await broken.sandbox.close();
    }
    const working = await setup('process-group', { workRoot });
    try {
      await working.sandbox.start(request);
      assert.equal((await working.exitOf(taskId)).code, 0);
    } finally {
      await working.sandbox.close();
    }
  });

  test('pid-namespace: even a process that drops the marker and leaves the group is killed', { skip: !available }, async () => {
    const s = await setup('pid-namespace');
    try {
      const taskId = newTaskId();
      const hidden = uniqueSleep();
      s.watched.push(hidden);
      await s.sandbox.start(
        s.request(taskId, {
          steps: [['sh', '-c', `setsid env -i sleep ${hidden} </dev/null >/dev/null 2>&1 & sleep 0.3; echo hidden`]],
        }),
      );
      const exit = await s.exitOf(taskId);
      assert.equal(exit.reason, 'exited');
      assert.deepEqual(exit.leftovers, []);
    } finally {
      await s.sandbox.close();
    }
  });

  test('pid-namespace: a worker reaped late leaves alone the namespaces made meanwhile', { skip: !available && 'PID namespaces are not available here' }, async () => {
    // The kernel gives the lowest free number to each new namespace, a freed one's too. A busy machine may reap a
    // finished worker late; by then its namespace's number may name another worker's, or a container's.
    const s = await setup('pid-namespace', { agentCommand: ['sh', '-c', 'sleep 0.5', 'agent'] });
    const host = readlinkSync('/proc/self/ns/pid');
    const neighbours: { process: ChildProcess; exit: Promise<[number | null, NodeJS.Signals | null]> }[] = [];
    try {
      const taskId = newTaskId();
      await s.sandbox.start(s.request(taskId, { steps: [['true']] }));
      const workers = await waitUntil(
        () => processesOfWorker(join(s.workRoot, taskId)).map(namespaceOf).find((namespace) => namespace !== undefined && namespace !== host),
        "the worker's namespace",
      );
      await sleep(200); // the sandbox looks for the namespace every 5 ms
      const busy = occupyThreadpool(await mkdtemp(join(root, 'fifos-')));
      try {
        await waitUntil(() => processesOfWorker(join(s.workRoot, taskId)).length === 0, 'the worker to end');
        await sleep(100); // a namespace's number is freed after an RCU grace period
        // New namespaces, until one has the worker's number (taking lower free ones first) or that number stays taken.
        for (let made = 0; made < 10; made++) {
          const argument = `3.${made}${Date.now() % 100000}`;
          const process = spawn('unshare', ['--pid', '--fork', 'sleep', argument], { stdio: 'ignore' });
          const exit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
            process.once('exit', (code, signal) => resolve([code, signal])),
          );
          neighbours.push({ process, exit });
          const namespace = await waitUntil(
            () => processesWithArgument(argument).map(namespaceOf).find((found) => found !== undefined && found !== host),
            'a new namespace',
          );
          if (namespace === workers) break;
        }
      } finally {
        await busy.release();
      }
      assert.equal((await s.exitOf(taskId)).code, 0);
      const exits = await Promise.all(neighbours.map((neighbour) => neighbour.exit));
      assert.deepEqual(exits, neighbours.map(() => [0, null]), 'every new namespace ends by itself');
    } finally {
      for (const neighbour of neighbours) neighbour.process.kill('SIGKILL');
      await s.sandbox.close();
    }
  });

  test('process-group: a worker reaped late leaves alone a new process group that was given its number', { skip: nextPidSettable() ? false : 'setting the next pid needs root' }, async () => {
    // Once the worker's own process is reaped, its pid, which is its group's id, may pass to another process.
    const detached = uniqueSleep();
    const s = await setup('process-group', { agentCommand: ['sh', '-c', `setsid sleep ${detached} & sleep 0.5`, 'agent'] });
    s.watched.push(detached);
    let neighbour: { process: ChildProcess; exit: Promise<[number | null, NodeJS.Signals | null]> } | undefined;
    try {
      const taskId = newTaskId();
      await s.sandbox.start(s.request(taskId, { steps: [['true']] }));
      const leader = Number(s.logged.find((entry) => entry.event === 'worker.started')?.fields.pid);
      await waitUntil(() => processesWithArgument(detached).length === 1, 'the detached process');
      // Its reaping waits for the thread pool, and finds the detached process, so it goes round at least twice.
      const busy = occupyThreadpool(await mkdtemp(join(root, 'fifos-')));
      try {
        await waitUntil(() => !existsSync(`/proc/${leader}`), 'the worker to end');
        for (let tries = 0; tries < 5 && neighbour?.process.pid !== leader; tries++) {
          neighbour?.process.kill('SIGKILL');
          writeFileSync('/proc/sys/kernel/ns_last_pid', String(leader - 1));
          const process = spawn('sleep', ['2'], { detached: true, stdio: 'ignore' });
          neighbour = { process, exit: new Promise((resolve) => process.once('exit', (code, signal) => resolve([code, signal]))) };
        }
      } finally {
        await busy.release();
      }
      assert.deepEqual((await s.exitOf(taskId)).leftovers, []);
      assert.equal(neighbour?.process.pid, leader, 'the new process group has the worker\'s number');
      assert.deepEqual(await neighbour.exit, [0, null], 'the new process group ends by itself');
    } finally {
      neighbour?.process.kill('SIGKILL');
      await s.sandbox.close();
    }
  });

  test('pid-namespace: many short workers, started in bursts, each exits by itself', { skip: !available && 'PID namespaces are not available here' }, async () => {
    // The kernel hands a freed PID namespace's number to the next new one: a finished worker whose leftovers are
    // looked for by that number would kill whichever new worker got it. Workers that end together keep the reaper
    // busy while the next ones start, as on a loaded machine.
    const count = 150;
    const burst = 5;
    const s = await setup('pid-namespace', {
      agentCommand: ['sh', '-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.2 & done; wait', 'agent'],
      maxWorkers: count,
    });
    try {
      const ids = Array.from({ length: count }, () => newTaskId());
      for (let i = 0; i < count; i += burst) {
        await Promise.all(ids.slice(i, i + burst).map((taskId) => s.sandbox.start(s.request(taskId, { steps: [['true']] }))));
        await sleep(40);
      }
      await waitUntil(() => s.exits.length === count, `all ${count} workers exit`);
      const killed = s.exits.filter((exit) => exit.reason !== 'exited' || exit.code !== 0 || exit.signal !== null);
      const logs = s.logged.filter((entry) => entry.event === 'worker.exited' && entry.level === 'warn');
      assert.deepEqual(killed, [], `${killed.length} of ${count} did not exit by themselves: ${JSON.stringify(logs.slice(0, 3))}`);
    } finally {
      await s.sandbox.close();
    }
  });

  test("isolation 'pid-namespace' where unavailable is an error; 'auto' picks what works", async () => {
    const workRoot = await mkdtemp(join(root, 'workers-'));
    const auto = await createProcessSandbox({ workRoot, onExit: () => {} });
    await auto.close();
    assert.equal(auto.isolation, available ? 'pid-namespace' : 'process-group');
    if (!available) {
      await assert.rejects(createProcessSandbox({ workRoot, onExit: () => {}, isolation: 'pid-namespace' }), /not available/);
    }
  });
});

describe('process sandbox: a bound on workers running at once', () => {
  test('runs at most maxWorkers at once; the rest wait in order, are listed, and end at their deadline or when stopped', async () => {
    const s = await setup('process-group', { agentCommand: ['sh', '-c', 'sleep 0.3', 'agent'], maxWorkers: 2 });
    let most = 0;
    const sampler = setInterval(() => {
      most = Math.max(most, scanProcesses(({ env }) => env.some((entry) => entry.startsWith(`HERMETIC_WORKER=${s.workRoot}/`))).length);
    }, 10);
    try {
      const ids = Array.from({ length: 6 }, () => newTaskId());
      const [expiring = '', stopped = ''] = [newTaskId(), newTaskId()];
      for (const taskId of ids) await s.sandbox.start(s.request(taskId, { steps: [['true']] }));
      await s.sandbox.start(s.request(expiring, { steps: [['true']] }, { deadline: Date.now() + 200 }));
      await s.sandbox.start(s.request(stopped, { steps: [['true']] }));
      assert.equal((await s.sandbox.list()).length, 8, 'waiting starts are workers too');
      await s.sandbox.stop(stopped);
      await waitUntil(() => s.exits.length === 8, 'every start ends');
      clearInterval(sampler);
      assert.ok(most <= 2 * 2, `at most 2 workers (each sh and its sleep) ran at once, saw ${most} processes`);
      assert.deepEqual(
        s.exits.filter((exit) => ids.includes(exit.taskId)).map((exit) => [exit.taskId, exit.reason, exit.code]).sort(),
        ids.map((taskId) => [taskId, 'exited', 0]).sort(),
        'the others ran to their end',
      );
      assert.deepEqual(s.exits.find((exit) => exit.taskId === expiring), { taskId: expiring, reason: 'deadline', code: null, signal: null, leftovers: [] });
      assert.deepEqual(s.exits.find((exit) => exit.taskId === stopped), { taskId: stopped, reason: 'exited', code: null, signal: null, leftovers: [] });
    } finally {
      clearInterval(sampler);
      await s.sandbox.close();
    }
  });
});

describe('process sandbox: work left by a killed run', () => {
  /** A task directory as a runtime killed mid-task leaves it: source, home, and a read-only tree like Go's module cache. */
  async function leaveWorkDir(workRoot: string, taskId: string): Promise<string> {
    const dir = join(workRoot, taskId);
    const cache = join(dir, 'home', 'go', 'pkg', 'mod', 'example.com', 'm@v1.0.0');
    await mkdir(join(dir, 'src'), { recursive: true });
    await mkdir(cache, { recursive: true });
    await writeFile(join(dir, 'src', 'README'), 'a test source tree\n');
    await writeFile(join(dir, 'agent.log'), 'started\n');
    await writeFile(join(cache, 'go.mod'), 'module example.com/m\n');
    await chmod(join(cache, 'go.mod'), 0o444);
    await chmod(cache, 0o555);
    await chmod(dirname(cache), 0o555);
    return dir;
  }

  test('is emptied when the sandbox starts; the directory stays, and the task is still refused as a duplicate', async () => {
    const workRoot = await mkdtemp(join(root, 'workers-'));
    const taskId = newTaskId();
    const dir = await leaveWorkDir(workRoot, taskId);
    const s = await setup('process-group', { workRoot });
    try {
      assert.deepEqual(await readdir(dir), []);
      await s.sandbox.start(s.request(taskId, { steps: [['true']] }));
      assert.deepEqual(await s.sandbox.list(), []);
      assert.ok(s.logged.some((entry) => entry.event === 'worker.duplicate-start' && entry.fields.taskId === taskId));
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await s.sandbox.close();
    }
  });

  test('keepWorkDirs keeps it', async () => {
    const workRoot = await mkdtemp(join(root, 'workers-'));
    const dir = await leaveWorkDir(workRoot, newTaskId());
    try {
      const s = await setup('process-group', { workRoot, keepWorkDirs: true });
      await s.sandbox.close();
      assert.deepEqual((await readdir(dir)).sort(), ['agent.log', 'home', 'src']);
    } finally {
      // Writable again, for the suite's cleanup.
      const module = join(dir, 'home', 'go', 'pkg', 'mod', 'example.com');
      await chmod(module, 0o755);
      await chmod(join(module, 'm@v1.0.0'), 0o755);
    }
  });
});

async function pidNamespacesWork(): Promise<boolean> {
  const workRoot = await mkdtemp(join(tmpdir(), 'hermetic-probe-'));
  try {
    const sandbox = await createProcessSandbox({ workRoot, onExit: () => {} });
    await sandbox.close();
    return sandbox.isolation === 'pid-namespace';
  } finally {
    await rm(workRoot, { recursive: true, force: true });
  }
}

/** Whether this process may choose the next pid (as CRIU does), to give a finished worker's pid to a new process. */
function nextPidSettable(): boolean {
  try {
    accessSync('/proc/sys/kernel/ns_last_pid', constants.W_OK);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}

function namespaceOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
