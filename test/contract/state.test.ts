import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openDatabase } from '../../shared/adapters/local/sqlite-database.ts';
import { compileQuery, createSqliteState } from '../../shared/adapters/local/sqlite-state.ts';
import { collections, type Query } from '../../shared/ports/state.ts';
import { createMemoryState } from '../fakes/memory-state.ts';
import { buildFixture, stateContract } from './state.contract.ts';

stateContract('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hermetic-state-'));
  const db = openDatabase(join(dir, 'state.db'));
  const store = createSqliteState(db);
  return {
    store,
    async cleanup() {
      await store.close();
      db.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

stateContract('memory', async () => {
  const store = createMemoryState();
  return { store, cleanup: () => store.close() };
});

describe('sqlite state, beyond the contract', () => {
  const withDir = async (fn: (dir: string) => Promise<void>): Promise<void> => {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-state-'));
    try {
      await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };


  it('keeps documents across closing and reopening the file', () =>
    withDir(async (dir) => {
      const path = join(dir, 'state.db');
      const db = openDatabase(path);
      const store = createSqliteState(db);
      await store.transaction(async (tx) => {
        tx.set(collections.builds, 'b1', buildFixture('b1', 1, 'passed'));
        tx.set(collections.builds, 'b2', buildFixture('b2', 2, 'queued'));
      });
      await store.close();
      db.close();

      const reopened = openDatabase(path);
      const again = createSqliteState(reopened);
      try {
        assert.deepEqual(await again.get(collections.builds, 'b1'), buildFixture('b1', 1, 'passed'));
        assert.deepEqual(
          (await again.query(collections.builds, { where: { status: 'queued' } })).map((b) => b.id),
          ['b2'],
        );
      } finally {
        await again.close();
        reopened.close();
      }
    }));

  it('does not close the database it was given', () =>
    withDir(async (dir) => {
      const db = openDatabase(join(dir, 'state.db'));
      const store = createSqliteState(db);
      await store.close();
      assert.equal(db.isOpen, true);
      db.close();
    }));

  it('answers queries on indexed fields from an index', () =>
    withDir(async (dir) => {
      const db = openDatabase(join(dir, 'state.db'));
      const store = createSqliteState(db);
      try {
        await store.transaction(async (tx) => {
          for (let i = 0; i < 200; i++) {
            tx.set(collections.builds, `b${i}`, buildFixture(`b${i}`, i, i % 2 ? 'passed' : 'queued'));
          }
          tx.set(collections.tasks, 't1', {
            id: 't1',
            buildId: 'b1',
            repo: 'go',
            commit: 'c1',
            builder: 'linux',
            step: 'make',
            attempt: 1,
            status: 'pending',
            createdAt: 1,
          });
        });
        const plan = (collection: typeof collections.builds | typeof collections.tasks, query: Query): string => {
          const { sql, params } = compileQuery(collection, query);
          return db
            .prepare(`EXPLAIN QUERY PLAN ${sql}`)
            .all(...params)
            .map((row) => String(row['detail']))
            .join('\n');
        };
        const cases: [typeof collections.builds | typeof collections.tasks, Query, RegExp][] = [
          [collections.builds, { where: { status: 'queued' } }, /USING INDEX documents_builds_status/],
          [
            collections.builds,
            { where: { status: { in: ['queued', 'running'] } } },
            /USING INDEX documents_builds_status/,
          ],
          [collections.builds, { where: { seq: 5 } }, /USING INDEX documents_builds_seq/],
          [
            collections.builds,
            { orderBy: { field: 'seq', direction: 'desc' }, limit: 10 },
            /SCAN documents USING INDEX documents_builds_seq/,
          ],
          [collections.tasks, { where: { buildId: 'b1' } }, /USING INDEX documents_tasks_buildId/],
        ];
        for (const [collection, query, expected] of cases) {
          const detail = plan(collection, query);
          assert.match(detail, expected, `${JSON.stringify(query)}:\n${detail}`);
          assert.doesNotMatch(detail, /SCAN documents(?! USING)/, `${JSON.stringify(query)} scans:\n${detail}`);
        }
        const ordered = plan(collections.builds, { orderBy: { field: 'seq', direction: 'desc' }, limit: 10 });
        assert.doesNotMatch(ordered, /TEMP B-TREE/, `an ordered query walks the index in order:\n${ordered}`);
        assert.equal((await store.query(collections.builds, { where: { status: 'queued' } })).length, 100);
      } finally {
        await store.close();
        db.close();
      }
    }));
});
