import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openDatabase } from '../../shared/adapters/local/sqlite-database.ts';
import { startWalCheckpoints } from '../../shared/adapters/local/wal-checkpoints.ts';
import { waitUntil } from '../helpers/wait.ts';

describe('WAL checkpoints in a thread of their own', () => {
  it('copy committed pages into the database file that no commit would have copied, and let the file close cleanly', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-wal-'));
    const path = join(dir, 'hermetic.db');
    const db = openDatabase(path);
    const failures: string[] = [];
    const checkpoints = startWalCheckpoints(db, path, (reason) => failures.push(reason));
    try {
      db.exec('CREATE TABLE t (x BLOB)');
      const before = statSync(path).size;
      // About 100 pages in 100 commits: far below the 1000 pages at which a commit would checkpoint by itself.
      const insert = db.prepare('INSERT INTO t VALUES (randomblob(4000))');
      for (let i = 0; i < 100; i++) insert.run();
      await waitUntil(() => statSync(path).size >= before + 100 * 4000, 'the rows are in the database file');
      assert.equal(db.prepare('SELECT count(*) AS n FROM t').get()?.['n'], 100);
    } finally {
      await checkpoints.stop();
      db.close();
    }
    // The last connection to close removes the WAL: the thread's own was closed first.
    assert.equal(existsSync(`${path}-wal`), false);
    assert.deepEqual(failures, []);
    await rm(dir, { recursive: true, force: true });
  });
});
