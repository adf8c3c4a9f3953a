import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { parseConfig } from '../../shared/core/config/config.ts';
import { ensureImages } from '../../shared/images/build-images.ts';
import { buildId } from '../../shared/core/model/ids.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { collections } from '../../shared/ports/state.ts';
import { startLocalRuntime, type LocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { engineSocket, startEngineProxy } from '../helpers/engine-proxy.ts';
import { createTestRepo } from '../helpers/git-repo.ts';
import { runUpUntilKilled } from '../helpers/killed-up.ts';
import { hangGuardMs, waitUntil } from '../helpers/wait.ts';
import { describeError } from '../../shared/core/errors.ts';

const docker = new Docker();
const socket = engineSocket();
const noEngine =
  socket === undefined
    ? 'the engine is reached over TCP (DOCKER_HOST); its restart is staged on a Unix socket'
    : await docker.ping().then(
        () => false as const,
        (error: unknown) => `needs a Docker engine (${describeError(error)}); .ci/run starts one`,
      );

describe('faults under a running pipeline', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('kill -9 of the runtime in the middle of its database writes, again and again, loses and doubles no build', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-sqlite-kill-'));
    dirs.push(dir);
    const repo = await createTestRepo(join(dir, 'repo'));
    const commits: string[] = [];
    for (let i = 0; i < 30; i++) commits.push(await repo.commit({ 'n.txt': `${i}\n` }, `commit ${i}`));
    const rawConfig = {
      repos: [{ name: 'repo', url: repo.path, builders: ['quick'], backfill: 30 }],
      builders: { quick: { type: 'command', command: 'cat n.txt' } },
    };
    const configFile = join(dir, 'config.json');
    await writeFile(configFile, JSON.stringify(rawConfig));
    const dataDir = join(dir, 'data');
    const args = ['--config', configFile, '--port', '0', '--data', dataDir, '--no-docker'];

    // Each run is killed once it has done a little more: a few launches, then a few verdicts, then more. The
    // pipeline writes to SQLite all the while (tasks, builds, the queue), so each kill lands among writes.
    for (const verdictsBeforeKill of [0, 3, 8]) {
      await runUpUntilKilled(
        args,
        (stderr) => (stderr.match(/▶ started/g) ?? []).length >= 2 && (stderr.match(/✓ passed/g) ?? []).length >= verdictsBeforeKill,
        `${verdictsBeforeKill} verdicts in this run`,
      );
    }

    const database = new DatabaseSync(join(dataDir, 'hermetic.db'), { readOnly: true });
    try {
      assert.equal(database.prepare('PRAGMA integrity_check').get()?.['integrity_check'], 'ok');
    } finally {
      database.close();
    }

    // A quick reaper: the tasks the kills left running are found lost at its first ticks, not 30 s apart.
    const runtime = await startLocalRuntime({ dataDir, catalog: parseConfig(rawConfig, configFile), logger: silentLogger, pollIntervalMs: 0, port: 0, reapIntervalMs: 1_000 });
    try {
      const ids = commits.map((commit) => buildId('repo', commit, 'quick'));
      await runtime.pollNow();
      await runtime.waitForBuilds(ids, hangGuardMs);
      const builds = await runtime.deps.state.query(collections.builds, {});
      assert.deepEqual(builds.map((build) => build.id).sort(), [...ids].sort(), 'one build per commit, none lost, none doubled');
      for (const build of builds) {
        assert.equal(build.status, 'passed', `${build.commit}: ${build.reason ?? ''}`);
        const tasks = await runtime.deps.state.query(collections.tasks, { where: { buildId: build.id } });
        // A task killed with its runtime is lost and retried; exactly one attempt has the verdict.
        assert.equal(tasks.filter((task) => task.status === 'passed').length, 1, JSON.stringify(tasks.map((task) => [task.attempt, task.status])));
        assert.ok(tasks.every((task) => task.status === 'passed' || task.status === 'lost'), JSON.stringify(tasks.map((task) => [task.attempt, task.status])));
      }
    } finally {
      await runtime.stop();
    }
  });
});

describe('the Docker engine restarted mid-build', { skip: noEngine }, () => {
  const dirs: string[] = [];
  before(async () => {
    await ensureImages({ docker, hostTypes: ['linux-amd64'] });
  });
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  /**
   * Runs one build of `command` on linux-amd64 through an engine proxy, restarts the "engine" once its worker runs
   * (`stopsContainers`: as dockerd does without live-restore, killing them), and returns the build and its tasks.
   */
  async function buildThroughRestart(command: string, stopsContainers: boolean) {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-engine-restart-'));
    dirs.push(dir);
    const repo = await createTestRepo(join(dir, 'repo'));
    const commit = await repo.commit({ README: 'restart\n' }, 'restart');
    const rawConfig = {
      repos: [{ name: 'repo', url: repo.path, builders: ['slow'] }],
      builders: { slow: { type: 'command', hostType: 'linux-amd64', command } },
    };
    const proxy = await startEngineProxy(join(dir, 'docker.sock'), socket ?? '');
    const dataDir = join(dir, 'data');
    const real = process.env.DOCKER_HOST;
    let runtime: LocalRuntime | undefined;
    try {
      // The runtime's Docker client reads DOCKER_HOST as it is made, at start.
      process.env.DOCKER_HOST = proxy.dockerHost;
      try {
        runtime = await startLocalRuntime({ dataDir, catalog: parseConfig(rawConfig, 'restart.json'), logger: silentLogger, pollIntervalMs: 0, port: 0, reapIntervalMs: 1_000 });
      } finally {
        if (real === undefined) delete process.env.DOCKER_HOST;
        else process.env.DOCKER_HOST = real;
      }
      const deployment = (await readFile(join(dataDir, 'deployment-id'), 'utf8')).trim();
      const ours = { all: true, filters: { label: [`hermetic.deployment=${deployment}`] } };
      await runtime.pollNow();
      await waitUntil(async () => (await docker.listContainers(ours)).some((info) => info.State === 'running'), 'the worker runs');
      await proxy.restart(3_000, async () => {
        if (stopsContainers) for (const info of await docker.listContainers(ours)) await docker.getContainer(info.Id).kill().catch(() => undefined);
      });
      const id = buildId('repo', commit, 'slow');
      await runtime.waitForBuilds([id], hangGuardMs);
      const build = await runtime.deps.state.get(collections.builds, id);
      const tasks = await runtime.deps.state.query(collections.tasks, { where: { buildId: id } });
      // A container killed by the restart is removed once its wait is looked at afresh, perhaps after the verdict.
      await waitUntil(async () => (await docker.listContainers(ours)).length === 0, 'no container is left');
      return { build, tasks: tasks.map((task) => `${task.attempt}:${task.status}`).sort() };
    } finally {
      await runtime?.stop();
      await proxy.close();
    }
  }

  it('that stops its containers: the lost worker is retried, and the build ends with one verdict', async () => {
    const { build, tasks } = await buildThroughRestart('if [ "$HERMETIC_ATTEMPT" = 1 ]; then sleep 300; fi; echo done', true);
    assert.equal(build?.status, 'passed', build?.reason);
    assert.deepEqual(tasks, ['1:lost', '2:passed']);
  });

  it('with live-restore (its containers keep running): the worker is watched again and passes on its first attempt', async () => {
    const { build, tasks } = await buildThroughRestart('sleep 8; echo done', false);
    assert.equal(build?.status, 'passed', build?.reason);
    assert.deepEqual(tasks, ['1:passed']);
  });
});
