import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parseConfig } from '../../shared/core/config/config.ts';
import { openDatabase } from '../../shared/adapters/local/sqlite-database.ts';
import type { Outcome } from '../../shared/core/handlers/message-handler.ts';
import { createSqliteQueue } from '../../shared/adapters/local/sqlite-queue.ts';
import { buildId, etagDocId } from '../../shared/core/model/ids.ts';
import { silentLogger, type Fields, type Logger } from '../../shared/ports/log.ts';
import { collections } from '../../shared/ports/state.ts';
import { createDispatcher } from '../../shared/runtimes/local/dispatcher.ts';
import { startLocalRuntime, type LocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { createTestRepo } from '../helpers/git-repo.ts';
import { hangGuardMs, waitUntil } from '../helpers/wait.ts';
import { describeError } from '../../shared/core/errors.ts';

const run = promisify(execFile);

/** Mounts a tmpfs of `size` at `dir`; rejects with the reason when this machine will not. */
async function mountTmpfs(dir: string, size: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
}

async function unmount(dir: string): Promise<void> {
  await run('umount', [dir]).catch(() => run('umount', ['-l', dir]));
}

const cannotMount: string | false = await (async () => {
  if (process.getuid?.() !== 0) return 'needs root, to mount a small tmpfs as the data directory';
  const probe = await mkdtemp(join(tmpdir(), 'hermetic-tmpfs-probe-'));
  try {
    await mountTmpfs(probe, '1m');
    await unmount(probe);
    return false;
  } catch (error) {
    return `cannot mount a tmpfs here: ${describeError(error).split('\n')[0]}`;
  } finally {
    await rm(probe, { recursive: true, force: true });
  }
})();

/** A logger that keeps every event, for the test to look at. */
function keepingLogger(): Logger & { events: { level: string; event: string; fields: Fields }[] } {
  const events: { level: string; event: string; fields: Fields }[] = [];
  const keep = (level: string) => (event: string, fields: Fields = {}) => {
    events.push({ level, event, fields });
  };
  return { events, info: keep('info'), warn: keep('warn'), error: keep('error') };
}

/** Fills the file system of `dir` with a file `filler` until a write fails for want of space; returns its path. */
async function fill(dir: string): Promise<string> {
  const filler = join(dir, 'filler');
  await run('sh', ['-c', 'head -c 1G /dev/zero > "$1"', 'fill', filler]).catch(() => undefined);
  const space = await statfs(dir);
  assert.equal(space.bavail, 0, `${dir} is full`);
  return filler;
}

/** Checkpoints the database's write-ahead log into it and truncates the log, waiting out the runtime's own checkpoints. */
function emptyWriteAheadLog(path: string): void {
  const database = new DatabaseSync(path);
  try {
    database.exec('PRAGMA busy_timeout = 10000');
    const row = database.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get();
    assert.equal(row?.['busy'], 0, 'the log was checkpointed and truncated');
  } finally {
    database.close();
  }
}

/** PRAGMA integrity_check of the database at `path`, read-only. */
function integrity(path: string): unknown {
  const database = new DatabaseSync(path, { readOnly: true });
  try {
    return database.prepare('PRAGMA integrity_check').get()?.['integrity_check'];
  } finally {
    database.close();
  }
}


/** A repo whose first commit's build writes 200 MB, and a config that builds it twice at most. */
async function fillingRepo(path: string) {
  const repo = await createTestRepo(path);
  const filling = await repo.commit({ 'build.sh': 'head -c 200M /dev/zero > fill\n' }, 'fill the disk');
  const rawConfig = {
    repos: [{ name: 'repo', url: repo.path, builders: ['sh'] }],
    builders: { sh: { type: 'command', command: 'sh build.sh', maxAttempts: 2 } },
  };
  return { repo, filling, rawConfig };
}

/** Polls, waits for the build of `commit` on the `sh` builder, and returns it with its tasks (and those as text). */
async function pollAndBuild(runtime: LocalRuntime, commit: string) {
  await runtime.pollNow();
  const id = buildId('repo', commit, 'sh');
  await runtime.waitForBuilds([id], hangGuardMs);
  const build = await runtime.deps.state.get(collections.builds, id);
  const tasks = await runtime.deps.state.query(collections.tasks, { where: { buildId: id } });
  return { build, tasks, attempts: JSON.stringify(tasks.map((task) => [task.attempt, task.status, task.reason])) };
}
describe('a full disk under `hermetic up`', { skip: cannotMount }, () => {
  const mounts: string[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const mount of mounts.reverse()) await unmount(mount);
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  async function tmpfs(size: string): Promise<{ dir: string; mount: (path: string, size: string) => Promise<void> }> {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-disk-full-'));
    dirs.push(dir);
    const mount = async (path: string, mountSize: string) => {
      await mountTmpfs(path, mountSize);
      mounts.push(path);
    };
    await mount(join(dir, 'data'), size);
    return { dir, mount };
  }

  it('a step that fills the data directory, then a full database: infra-failure naming the full disk, 507s, `up` serving, the database intact, and once space is freed the next build passes', async () => {
    const { dir } = await tmpfs('64m');
    const dataDir = join(dir, 'data');
    const { repo, filling, rawConfig } = await fillingRepo(join(dir, 'repo'));
    const logger = keepingLogger();
    // A short lease: a message whose ack the full disk refused is delivered again soon after space is freed.
    const runtime = await startLocalRuntime({ dataDir, catalog: parseConfig(rawConfig, 'disk-full.json'), logger, pollIntervalMs: 0, port: 0, containers: 'off', reapIntervalMs: 1_000, subscription: { ackDeadlineMs: 10_000 } });
    try {
      const { build, attempts } = await pollAndBuild(runtime, filling);
      // Its worker's directory is on the data directory's disk: the step filled both, so the result could not land.
      assert.equal(build?.status, 'infra-failure', attempts);
      assert.match(build?.reason ?? '', /^worker lost 2 times; last: the worker exited with code 1 without a result: its result was refused: no room for blob "results\/[0-9a-f]{24}\.json": .* free of 64 MiB on the file system of \S+\/data\/blobs$/, attempts);
      assert.ok(logger.events.some((event) => event.event === 'blobs.store-full' && event.level === 'error'), 'the refusals are logged');

      // The disk full under the database itself. The write-ahead log is emptied into the file first, but the runtime's
      // own checkpoints may let a few of its pages be reused by later writes; once those are used, a write must grow it.
      emptyWriteAheadLog(join(dataDir, 'hermetic.db'));
      const filler = await fill(dataDir);
      const passing = await repo.commit({ 'build.sh': 'echo fine\n' }, 'fits');
      // Writes that queue no work (a poll tick that landed would run, fail on the disk and hold its lease for minutes).
      let refused: unknown;
      for (let write = 0; write < 200 && refused === undefined; write++) {
        const doc = { key: `disk-full-${write}`, etag: 'e', value: 'x'.repeat(4096), storedAt: 0 };
        await runtime.deps.state.transaction(async (tx) => tx.set(collections.etags, etagDocId(doc.key), doc)).catch((error: unknown) => (refused = error));
      }
      assert.match(String(refused), /database or disk is full/);
      const page = await fetch(runtime.url);
      assert.equal(page.status, 200, 'the dashboard answers on a full disk');
      await page.arrayBuffer();
      const url = await runtime.deps.blobs.signUrl(`results/${'0'.repeat(24)}.json`, { method: 'PUT', expiresAt: Date.now() + 60_000 });
      const put = await fetch(url, { method: 'PUT', body: '{}' });
      assert.equal(put.status, 507);
      assert.match(await put.text(), /insufficient storage/);
      assert.equal(integrity(join(dataDir, 'hermetic.db')), 'ok');

      await rm(filler);
      const { build: passed } = await pollAndBuild(runtime, passing);
      assert.equal(passed?.status, 'passed', passed?.reason);
    } finally {
      await runtime.stop();
    }
    assert.equal(integrity(join(dataDir, 'hermetic.db')), 'ok');
  });

  it('a step that fills its worker\'s own disk: infra-failure saying so, retried, and the next build passes', async () => {
    const { dir, mount } = await tmpfs('64m');
    const dataDir = join(dir, 'data');
    // The workers' disk apart from the data directory's, as a container's or a VM's is: the result still lands.
    await mount(join(dataDir, 'workers'), '16m');
    const { repo, filling, rawConfig } = await fillingRepo(join(dir, 'repo'));
    const runtime = await startLocalRuntime({ dataDir, catalog: parseConfig(rawConfig, 'disk-full.json'), logger: silentLogger, pollIntervalMs: 0, port: 0, containers: 'off' });
    try {
      const { build, tasks, attempts } = await pollAndBuild(runtime, filling);
      assert.equal(build?.status, 'infra-failure', attempts);
      assert.match(build?.reason ?? '', /^worker lost 2 times; last: sh build\.sh exited 1 with the worker's disk full: .* free of 16 MiB on the file system of \S+\/data\/workers\/[0-9a-f]{24}$/, attempts);
      assert.deepEqual(tasks.map((task) => task.status), ['lost', 'lost']);

      const passing = await repo.commit({ 'build.sh': 'echo fine\n' }, 'fits');
      const { build: passed } = await pollAndBuild(runtime, passing);
      assert.equal(passed?.status, 'passed', passed?.reason);
    } finally {
      await runtime.stop();
    }
  });

  it('the queue on a full disk: a nack and pulls that fail crash nothing and lose no message', async () => {
    const { dir } = await tmpfs('8m');
    const dataDir = join(dir, 'data');
    const db = openDatabase(join(dataDir, 'queue.db'));
    const queue = createSqliteQueue(db);
    const logger = keepingLogger();
    let filler: string | undefined;
    let calls = 0;
    await queue.subscribe('topic', 'sub', { ackDeadlineMs: 1_000, maxAttempts: 5, minBackoffMs: 100, maxBackoffMs: 1_000 });
    await queue.publish('topic', Buffer.from('{}'));
    const handle = Object.assign(
      async (): Promise<Outcome> => {
        calls++;
        if (calls > 1) return { action: 'ack' };
        // The disk fills under the first delivery: its nack cannot be written, nor the lease of its redelivery.
        db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
        filler = await fill(dataDir);
        throw new Error('the handler failed');
      },
      { abandon: async () => {} },
    );
    const dispatcher = createDispatcher({ queue, logger, routes: [{ topic: 'topic', subscription: 'sub', handle, concurrency: 1 }] });
    try {
      await waitUntil(() => logger.events.some((event) => event.event === 'message.nack-failed'), 'the nack fails');
      await waitUntil(() => logger.events.some((event) => event.event === 'message.pull-failed'), 'a pull fails');
      assert.equal(calls, 1);
      await rm(filler ?? '');
      await waitUntil(async () => calls === 2 && (await queue.backlog()).count === 0, 'the message is delivered again and acked');
      assert.equal((await queue.list()).length, 0, 'no dead letter');
    } finally {
      await dispatcher.stop();
      db.close();
    }
    assert.equal(integrity(join(dataDir, 'queue.db')), 'ok');
  });
});
