import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { parseConfig } from '../../shared/core/config/config.ts';
import { ensureImages } from '../../shared/images/build-images.ts';
import { checkHostType } from '../../shared/images/check-host-type.ts';
import { buildId } from '../../shared/core/model/ids.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { collections } from '../../shared/ports/state.ts';
import { startLocalRuntime, type LocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { createTestRepo } from '../helpers/git-repo.ts';
import { processesWithEnv } from '../helpers/processes.ts';
import { describeError } from '../../shared/core/errors.ts';

const bin = fileURLToPath(new URL('../../bin/hermetic.js', import.meta.url));
const docker = new Docker();
const noDocker = await docker.ping().then(
  () => false as const,
  (error: unknown) => `needs a Docker engine (${describeError(error)}); .ci/run starts one`,
);

const module = {
  'go.mod': 'module example.com/arch\n\ngo 1.19\n',
  'arch.go': 'package arch\n\nimport "runtime"\n\n// Name is the architecture this was built for.\nfunc Name() string { return runtime.GOARCH }\n',
  'arch_test.go':
    'package arch\n\nimport (\n\t"os"\n\t"testing"\n)\n\nfunc TestArch(t *testing.T) {\n\tif got, want := Name(), os.Getenv("WANT_GOARCH"); got != want {\n\t\tt.Fatalf("built for %s, want %s", got, want)\n\t}\n}\n',
};

const rawConfig = (repo: string) => ({
  repos: [{ name: 'arch', url: repo, builders: ['amd64', 'x386', 'background', 'hang', 'offline', 'online', 'loopback'] }],
  builders: {
    amd64: { type: 'go-module', hostType: 'linux-amd64', env: { WANT_GOARCH: 'amd64' }, timeoutSeconds: 300 },
    x386: { type: 'go-module', hostType: 'linux-386', env: { WANT_GOARCH: '386' }, timeoutSeconds: 300 },
    background: { type: 'command', hostType: 'linux-amd64', command: 'sleep 300 & echo started in the background' },
    hang: { type: 'command', hostType: 'linux-amd64', command: 'echo hanging; sleep 600', timeoutSeconds: 15 },
    slow: { type: 'command', hostType: 'linux-amd64', command: 'sleep 6; echo done' },
    offline: { type: 'command', hostType: 'linux-amd64', command: 'cat /proc/net/dev' },
    online: { type: 'command', hostType: 'linux-amd64', command: 'cat /proc/net/dev', network: true },
    // A server and a client on 127.0.0.1, as many tests are: the step's own loopback must be up.
    loopback: {
      type: 'command',
      hostType: 'linux-amd64',
      command: `/opt/hermetic/node -e 'const net = require("net"); const server = net.createServer((c) => c.end("pong")).listen(0, "127.0.0.1", () => net.connect(server.address().port, "127.0.0.1").on("data", (d) => { console.log("loopback: " + d); process.exit(0); }))'`,
    },
  },
});

async function containersOf(taskId: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`hermetic.task=${taskId}`] } });
}

/** Why this kernel cannot run linux-386 workers, or false when it can. */
const no386 = await checkHostType('linux-386').then((availability) => (availability.available ? false : availability.reason));

describe('builds in containers, end to end', { skip: noDocker }, () => {
  let dir: string;
  let runtime: LocalRuntime | undefined;
  let commit: string;
  const dirs: string[] = [];

  before(async () => {
    await ensureImages({ docker, hostTypes: ['linux-amd64', 'linux-386'] });
    dir = await mkdtemp(join(tmpdir(), 'hermetic-containers-'));
    dirs.push(dir);
    const repo = await createTestRepo(join(dir, 'repo'));
    commit = await repo.commit(module, 'arch: report GOARCH');
    runtime = await startLocalRuntime({
      dataDir: join(dir, 'data'),
      catalog: parseConfig(rawConfig(repo.path), 'containers-config.json'),
      logger: silentLogger,
      pollIntervalMs: 0,
      port: 0,
    });
    const poll = await runtime.pollNow();
    await runtime.waitForBuilds(poll.requested.map((build) => build.buildId), 240_000);
  });

  after(async () => {
    await runtime?.stop();
    for (const each of dirs) await rm(each, { recursive: true, force: true });
  });

  async function buildOf(builder: string) {
    const id = buildId('arch', commit, builder);
    const build = await runtime?.deps.state.get(collections.builds, id);
    const [task] = (await runtime?.deps.state.query(collections.tasks, { where: { buildId: id } })) ?? [];
    assert.ok(build && task, `a build and a task for ${builder}`);
    return { build, task };
  }

  it('builds and tests a Go module on linux-amd64, for its own architecture', async () => {
    const { build, task } = await buildOf('amd64');
    assert.equal(build.status, 'passed', build.reason);
    assert.equal(task.hostType, 'linux-amd64');
  });

  it('builds and tests a Go module on linux-386, for its own architecture', async (t) => {
    if (no386 !== false) return t.skip(no386);
    const { build, task } = await buildOf('x386');
    assert.equal(build.status, 'passed', build.reason);
    assert.equal(task.hostType, 'linux-386');
  });

  it('reports a linux-386 build on a kernel that runs no 32-bit programs as an infra-failure saying why', async (t) => {
    if (no386 === false) return t.skip('this kernel runs 32-bit programs');
    const { build } = await buildOf('x386');
    assert.equal(build.status, 'infra-failure');
    assert.match(build.reason ?? '', /cannot run 32-bit x86 programs/);
  });

  it('leaves no process and no container of a task whose step started a background process', async () => {
    const { build, task } = await buildOf('background');
    assert.equal(build.status, 'passed');
    assert.deepEqual(await containersOf(task.id), []);
    assert.deepEqual(await processesWithEnv('HERMETIC_TASK_ID', task.id), []);
  });

  it('stops a task that hangs at its deadline and reports it as timed out', async () => {
    const { build, task } = await buildOf('hang');
    assert.equal(task.status, 'timed-out');
    assert.equal(build.status, 'failed');
    assert.deepEqual(await containersOf(task.id), []);
    const log = await (await fetch(`${runtime?.url}/log/${task.id}`)).text();
    assert.match(log, /hanging/);
  });

  it('gives the steps no network but loopback, unless the builder asks for it', async () => {
    const interfaces = async (builder: string) => {
      const { build, task } = await buildOf(builder);
      assert.equal(build.status, 'passed');
      const log = await (await fetch(`${runtime?.url}/log/${task.id}`)).text();
      return [...log.matchAll(/^\s*(\w+):/gm)].map((match) => match[1]).filter((name) => name !== 'Inter');
    };
    assert.deepEqual(await interfaces('offline'), ['lo']);
    const { build, task } = await buildOf('loopback');
    assert.equal(build.status, 'passed', `a connection over the step's loopback: ${build.reason}`);
    assert.match(await (await fetch(`${runtime?.url}/log/${task.id}`)).text(), /^loopback: pong$/m);
    assert.ok((await interfaces('online')).some((name) => name !== 'lo'), 'a network interface besides loopback');
  });

  it('finishes a build once after the runtime is killed mid-build and restarted', async () => {
    const killDir = await mkdtemp(join(tmpdir(), 'hermetic-containers-kill-'));
    dirs.push(killDir);
    const repo = await createTestRepo(join(killDir, 'repo'));
    const slowCommit = await repo.commit({ README: 'slow\n' }, 'slow');
    const config = { ...rawConfig(repo.path), repos: [{ name: 'slow', url: repo.path, builders: ['slow'] }] };
    const configFile = join(killDir, 'config.json');
    await writeFile(configFile, JSON.stringify(config));
    const dataDir = join(killDir, 'data');
    const child = spawn(process.execPath, [bin, 'up', '--config', configFile, '--port', '0', '--data', dataDir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise((resolve) => child.on('exit', resolve));
    const id = buildId('slow', slowCommit, 'slow');
    for (let i = 0; i < 600 && !/▶ started/.test(stderr); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.match(stderr, /▶ started/);
    child.kill('SIGKILL');
    await exited;

    const again = await startLocalRuntime({ dataDir, catalog: parseConfig(config, configFile), logger: silentLogger, pollIntervalMs: 0, port: 0 });
    try {
      await again.waitForBuilds([id], 120_000);
      const build = await again.deps.state.get(collections.builds, id);
      assert.equal(build?.status, 'passed', build?.reason);
      const tasks = await again.deps.state.query(collections.tasks, { where: { buildId: id } });
      for (const task of tasks) assert.deepEqual(await containersOf(task.id), []);
    } finally {
      await again.stop();
    }
  });
});
