import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../shared/core/config/config.ts';
import { buildId } from '../../shared/core/model/ids.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { collections } from '../../shared/ports/state.ts';
import { startLocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { createTestRepo } from '../helpers/git-repo.ts';
import { runUpUntilKilled } from '../helpers/killed-up.ts';
import { processesWithEnv } from '../helpers/processes.ts';
import { hangGuardMs, waitUntil } from '../helpers/wait.ts';

const bin = fileURLToPath(new URL('../../bin/hermetic.js', import.meta.url));

describe('a runtime stopped in the middle of a build', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  /** A repo of one commit whose build waits on its first attempt and passes on the next, with its config file. */
  async function waitOnFirstAttempt(prefix: string) {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(dir);
    const repo = await createTestRepo(join(dir, 'repo'));
    const commit = await repo.commit({ 'wait.sh': '#!/bin/sh\nif [ "$HERMETIC_ATTEMPT" = 1 ]; then sleep 600; fi\necho done\n' }, 'wait', { executable: ['wait.sh'] });
    const rawConfig = { repos: [{ name: 'repo', url: repo.path, builders: ['wait'] }], builders: { wait: { type: 'command', command: './wait.sh' } } };
    const configFile = join(dir, 'config.json');
    await writeFile(configFile, JSON.stringify(rawConfig));
    return { dir, commit, rawConfig, configFile, dataDir: join(dir, 'data') };
  }

  /** Runs `hermetic up ARGS` until its worker has started (and `started` says so too), then kills it with SIGKILL. */
  function upKilledMidBuild(args: string[], started: () => boolean | Promise<boolean> = () => true): Promise<void> {
    return runUpUntilKilled(args, async (stderr) => /▶ started/.test(stderr) && (await started()), 'the worker to start');
  }

  it('kills the worker, and after a restart the build reaches exactly one verdict on a fresh attempt', async () => {
    const { rawConfig, configFile, dataDir } = await waitOnFirstAttempt('hermetic-restart-');
    const options = { dataDir, catalog: parseConfig(rawConfig, configFile), logger: silentLogger, pollIntervalMs: 0, port: 0 };

    const first = await startLocalRuntime(options);
    const [requested] = (await first.pollNow()).requested;
    assert.ok(requested);
    await waitUntil(async () => (await first.compute.list()).length > 0, 'the worker is running');
    assert.equal((await first.compute.list()).length, 1, 'one worker');
    await first.stop();
    assert.deepEqual(await processesWithEnv('HOME', options.dataDir), [], 'stopping killed the worker');

    const second = await startLocalRuntime(options);
    try {
      await second.waitForBuilds([requested.buildId], hangGuardMs);
      const build = await second.deps.state.get(collections.builds, requested.buildId);
      const tasks = await second.deps.state.query(collections.tasks, { where: { buildId: requested.buildId } });
      const attempts = JSON.stringify(tasks.map((task) => [task.attempt, task.status, task.reason]));
      assert.equal(build?.status, 'passed', attempts);
      assert.equal(build?.attempts, 2, attempts);
      assert.deepEqual(tasks.map((task) => task.status).sort(), ['lost', 'passed']);
    } finally {
      await second.stop();
    }
  });

  it('after kill -9 of the runtime, its workers die with it, and a restart retries the build to exactly one verdict', async () => {
    const { commit, rawConfig, configFile, dataDir } = await waitOnFirstAttempt('hermetic-kill-');
    await upKilledMidBuild(['--config', configFile, '--port', '0', '--data', dataDir], async () => (await processesWithEnv('HOME', dataDir)).length > 0);
    await waitUntil(async () => (await processesWithEnv('HOME', dataDir)).length === 0, 'the orphaned worker to die');

    const runtime = await startLocalRuntime({ dataDir, catalog: parseConfig(rawConfig, configFile), logger: silentLogger, pollIntervalMs: 0, port: 0 });
    try {
      const id = buildId('repo', commit, 'wait');
      await runtime.waitForBuilds([id], hangGuardMs);
      const build = await runtime.deps.state.get(collections.builds, id);
      assert.equal(build?.status, 'passed');
      assert.equal(build?.attempts, 2);
      const tasks = await runtime.deps.state.query(collections.tasks, { where: { buildId: id } });
      assert.deepEqual(tasks.map((task) => `${task.attempt}:${task.status}`).sort(), ['1:lost', '2:passed']);
      assert.equal(tasks.find((task) => task.attempt === 1)?.reason, 'the worker vanished without a result');
    } finally {
      await runtime.stop();
    }
    // Each attempt's directory stays as the record of its start; the killed runtime's too is emptied.
    const workRoot = join(dataDir, 'workers');
    const workDirs = await readdir(workRoot);
    assert.equal(workDirs.length, 2);
    for (const workDir of workDirs) assert.deepEqual(await readdir(join(workRoot, workDir)), [], `${workDir} is emptied`);
  });

  it('after kill -9 of the runtime, `up --once --json` finishes the build it left and prints it', async () => {
    const { commit, configFile, dataDir } = await waitOnFirstAttempt('hermetic-once-');
    const args = ['--config', configFile, '--port', '0', '--data', dataDir];
    await upKilledMidBuild(args);

    const again = spawn(process.execPath, [bin, 'up', ...args, '--once', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let progress = '';
    again.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    again.stderr.on('data', (chunk: Buffer) => (progress += chunk.toString()));
    const code = await new Promise((resolve) => again.on('exit', resolve));
    assert.equal(code, 0, progress);
    const summaries = JSON.parse(stdout) as { id: string; status: string; commit: string }[];
    assert.deepEqual(
      summaries.map(({ id, status, commit: hash }) => ({ id, status, commit: hash })),
      [{ id: buildId('repo', commit, 'wait'), status: 'passed', commit }],
    );
    assert.match(progress, /1 build\(s\) to run \(1 left unfinished by an earlier run\)/);
  });
});
