import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../shared/config/config.ts';
import { buildId } from '../../shared/model/ids.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { collections } from '../../shared/ports/state.ts';
import { startLocalRuntime } from '../../shared/runtime/local-runtime.ts';
import { createTestRepo } from '../helpers/git-repo.ts';
import { hangGuardMs, waitUntil } from '../helpers/wait.ts';

const bin = fileURLToPath(new URL('../../bin/hermetic.js', import.meta.url));

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
    const args = [bin, 'up', '--config', configFile, '--port', '0', '--data', dataDir, '--no-docker'];

    // Each run is killed once it has done a little more: a few launches, then a few verdicts, then more. The
    // pipeline writes to SQLite all the while (tasks, builds, the queue), so each kill lands among writes.
    for (const verdictsBeforeKill of [0, 3, 8]) {
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise((resolve) => child.on('exit', resolve));
      try {
        await waitUntil(
          () => (stderr.match(/▶ started/g) ?? []).length >= 2 && (stderr.match(/✓ passed/g) ?? []).length >= verdictsBeforeKill,
          `${verdictsBeforeKill} verdicts in this run`,
          { detail: () => stderr.slice(-2000) },
        );
      } finally {
        child.kill('SIGKILL');
        await exited;
      }
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
