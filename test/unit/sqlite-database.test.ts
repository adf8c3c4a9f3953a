import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openDatabase } from '../../shared/adapters/local/sqlite-database.ts';

describe('opening the embedded database', () => {
  it('opens while another connection holds the write lock, leaving its statistics for a later opening', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-sqlite-open-'));
    const path = join(dir, 'hermetic.db');
    const writer = openDatabase(path);
    try {
      // A table never measured, which the opening's PRAGMA optimize would ANALYZE: that needs the write lock.
      writer.exec('CREATE TABLE t (x INTEGER); CREATE INDEX t_x ON t (x)');
      const insert = writer.prepare('INSERT INTO t VALUES (?)');
      for (let i = 0; i < 5000; i++) insert.run(i);
      // As a running `hermetic up` does between its commits, while a CLI command opens the file.
      writer.exec('BEGIN IMMEDIATE');
      const reader = openDatabase(path);
      assert.equal(reader.prepare('SELECT count(*) AS n FROM t').get()?.['n'], 5000);
      reader.close();
      writer.exec('COMMIT');
    } finally {
      writer.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
