import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { groupCommitOf } from '../../shared/adapters/local/group-commit.ts';
import { openDatabase } from '../../shared/adapters/local/sqlite-database.ts';

describe('group commit on one SQLite connection', () => {
  let dir: string;
  let db: DatabaseSync;
  // Another connection to the same file sees only what is committed.
  let other: DatabaseSync;
  const committedRows = (): number[] => other.prepare('SELECT x FROM t ORDER BY x').all().map((row) => Number(row['x']));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hermetic-group-commit-'));
    const path = join(dir, 'test.db');
    db = openDatabase(path);
    // A deferred foreign key is checked at COMMIT: a row naming a missing parent makes the commit itself fail.
    db.exec(`CREATE TABLE parents (id INTEGER PRIMARY KEY);
      CREATE TABLE t (x INTEGER UNIQUE, parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)`);
    other = openDatabase(path);
  });
  after(async () => {
    other.close();
    db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lands the writes of one turn of the event loop in one transaction, each resolving once it is committed', async () => {
    db.exec('DELETE FROM t');
    const group = groupCommitOf(db);
    assert.equal(groupCommitOf(db), group, 'one group per connection');
    const insert = db.prepare('INSERT INTO t (x) VALUES (?)');
    const first = group.write(() => insert.run(1).changes);
    const second = group.write(() => insert.run(2).changes);
    const token = group.current();
    assert.notEqual(token, undefined);
    // Applied at once for this connection, not yet committed for any other.
    assert.equal(db.prepare('SELECT count(*) AS n FROM t').get()?.['n'], 2);
    assert.deepEqual(committedRows(), []);
    const read = group.read(() => db.prepare('SELECT count(*) AS n FROM t').get()?.['n']);
    assert.deepEqual(await Promise.all([first, second, read]), [1, 1, 2]);
    assert.deepEqual(committedRows(), [1, 2]);
    assert.equal(group.current(), undefined);
    const next = group.write(() => insert.run(3));
    assert.notEqual(group.current(), token, 'a later transaction has a token of its own');
    await next;
    await group.durable();
  });

  it('undoes only the write that throws', async () => {
    db.exec('DELETE FROM t');
    const group = groupCommitOf(db);
    const insert = db.prepare('INSERT INTO t (x) VALUES (?)');
    const good = group.write(() => insert.run(1));
    const bad = group.write(() => {
      insert.run(2);
      insert.run(1); // violates UNIQUE: its own first insert goes with it
    });
    const alsoGood = group.write(() => insert.run(3));
    await assert.rejects(bad, /UNIQUE constraint failed/);
    await good;
    await alsoGood;
    assert.deepEqual(committedRows(), [1, 3]);
  });

  it('rejects every write of a transaction whose commit fails, and every read that saw it, and rolls it all back', async () => {
    db.exec('DELETE FROM t');
    const group = groupCommitOf(db);
    const insert = db.prepare('INSERT INTO t (x, parent) VALUES (?, ?)');
    const innocent = group.write(() => insert.run(1, null));
    const culprit = group.write(() => insert.run(2, 42)); // no parent 42: the commit fails
    const reader = group.read(() => db.prepare('SELECT count(*) AS n FROM t').get()?.['n']);
    const results = await Promise.allSettled([innocent, culprit, reader, group.durable()]);
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      assert.match(String(result.reason), /FOREIGN KEY constraint failed/);
    }
    assert.equal(db.isTransaction, false);
    assert.deepEqual(committedRows(), []);
    // The connection goes on: the next turn's writes commit.
    await group.write(() => insert.run(3, null));
    assert.deepEqual(committedRows(), [3]);
  });

  it('resolves a read at once when nothing is pending, and commits what is pending on flush', async () => {
    db.exec('DELETE FROM t');
    const group = groupCommitOf(db);
    assert.equal(await group.read(() => 'now'), 'now');
    const pending = group.write(() => db.prepare('INSERT INTO t (x) VALUES (7)').run());
    group.flush();
    assert.deepEqual(committedRows(), [7]);
    await pending;
  });

  it('waits for another connection of this process to let go of the write lock without blocking the event loop', async () => {
    db.exec('DELETE FROM t');
    const group = groupCommitOf(db);
    // Another connection takes the write lock, as a command run inside the same process would, and lets go of it
    // on a timer: a busy wait in this thread would keep that timer from ever firing.
    other.exec('BEGIN IMMEDIATE');
    other.exec('INSERT INTO t (x) VALUES (1)');
    const events: string[] = [];
    setTimeout(() => {
      events.push('the other connection commits');
      other.exec('COMMIT');
    }, 50);
    const first = group.write(() => db.prepare('INSERT INTO t (x) VALUES (2)').run());
    const second = group.write(() => db.prepare('INSERT INTO t (x) VALUES (3)').run());
    events.push('writes asked for');
    await Promise.all([first, second]);
    events.push('writes committed');
    assert.deepEqual(events, ['writes asked for', 'the other connection commits', 'writes committed']);
    assert.deepEqual(committedRows(), [1, 2, 3]);
  });
});
