import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { Build } from '../../shared/core/model/types.ts';
import { collections, type Collection, type StateStore } from '../../shared/ports/state.ts';

interface Thing {
  kind: string;
  n?: number;
  label?: string | number | boolean;
  status?: string;
  note?: string;
}

const things: Collection<Thing> = { name: 'contract-things', indexed: ['kind', 'n', 'label', 'status'] };
const others: Collection<Thing> = { name: 'contract-others', indexed: ['kind'] };

/** The StateStore contract: every adapter passes these unchanged. `make` gives a fresh, empty store. */
/** A minimal build document for tests of the pipeline's collections. */
export function buildFixture(id: string, seq: number, status: Build['status']): Build {
  return { id, repo: 'go', commit: `c${seq}`, builder: 'linux', seq, status, createdAt: seq, attempts: 0 };
}

export function stateContract(
  adapterName: string,
  make: () => Promise<{ store: StateStore; cleanup(): Promise<void> }>,
): void {
  describe(`StateStore contract: ${adapterName}`, () => {
    let store: StateStore;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      ({ store, cleanup } = await make());
    });
    afterEach(async () => {
      await cleanup();
    });

    const put = (collection: Collection<Thing>, docs: Record<string, Thing>): Promise<void> =>
      store.transaction(async (tx) => {
        for (const [id, doc] of Object.entries(docs)) tx.set(collection, id, doc);
      });
    const ids = async (query: Parameters<StateStore['query']>[1]): Promise<string[]> =>
      (await store.query(things, query)).map((doc) => doc.note ?? '?');

    it('sets, gets and deletes a document', async () => {
      await put(things, { a: { kind: 'x', n: 1, note: 'first' } });
      assert.deepEqual(await store.get(things, 'a'), { kind: 'x', n: 1, note: 'first' });
      await put(things, { a: { kind: 'y', n: 2 } });
      assert.deepEqual(await store.get(things, 'a'), { kind: 'y', n: 2 }, 'set replaces the whole document');
      await store.transaction(async (tx) => tx.delete(things, 'a'));
      assert.equal(await store.get(things, 'a'), undefined);
    });

    it('gives undefined for a missing document, inside and outside a transaction', async () => {
      assert.equal(await store.get(things, 'missing'), undefined);
      assert.equal(await store.transaction((tx) => tx.get(things, 'missing')), undefined);
      await store.transaction(async (tx) => tx.delete(things, 'missing'));
    });

    it('keeps collections apart', async () => {
      await put(things, { same: { kind: 'thing' } });
      await put(others, { same: { kind: 'other' } });
      assert.equal((await store.get(things, 'same'))?.kind, 'thing');
      assert.equal((await store.get(others, 'same'))?.kind, 'other');
      assert.deepEqual(
        (await store.query(things)).map((doc) => doc.kind),
        ['thing'],
      );
    });

    it('hands out copies: changing a document read or written later changes nothing stored', async () => {
      const doc: Thing = { kind: 'x', n: 1 };
      await store.transaction(async (tx) => {
        tx.set(things, 'a', doc);
        doc.n = 99;
      });
      const read = await store.get(things, 'a');
      assert.equal(read?.n, 1);
      if (read !== undefined) read.kind = 'changed';
      const [queried] = await store.query(things, { where: { kind: 'x' } });
      assert.equal(queried?.kind, 'x');
    });

    it('round-trips nested JSON and drops undefined fields', async () => {
      const build: Build = {
        id: 'b1',
        repo: 'go',
        commit: 'abc',
        builder: 'linux',
        seq: 7,
        status: 'queued',
        createdAt: 1.5,
        attempts: 0,
      };
      await store.transaction(async (tx) => tx.set(collections.builds, 'b1', build));
      assert.deepEqual(await store.get(collections.builds, 'b1'), build);
      const loose: Collection<{ kind: string; gone: string | undefined }> = { name: 'contract-loose', indexed: [] };
      await store.transaction(async (tx) => tx.set(loose, 'u', { kind: 'u', gone: undefined }));
      assert.deepEqual(await store.get(loose, 'u'), { kind: 'u' });
      const nested = { kind: 'n', note: JSON.stringify({ deep: [1, 'two', { three: null }] }) };
      await put(things, { n: nested });
      assert.deepEqual(await store.get(things, 'n'), nested);
    });

    describe('query', () => {
      beforeEach(async () => {
        await put(things, {
          d1: { kind: 'a', n: 3, status: 'pending', note: 'd1' },
          d2: { kind: 'b', n: 1, status: 'launched', note: 'd2' },
          d3: { kind: 'a', n: 2, status: 'pending', note: 'd3' },
          d4: { kind: 'c', n: 10, note: 'd4' },
          d5: { kind: 'a', n: 2, status: 'passed', note: 'd5' },
          d6: { kind: 'b', note: 'd6' },
        });
      });

      it('filters on equality', async () => {
        assert.deepEqual(await ids({ where: { kind: 'a' } }), ['d1', 'd3', 'd5']);
        assert.deepEqual(await ids({ where: { kind: 'a', status: 'pending' } }), ['d1', 'd3']);
        assert.deepEqual(await ids({ where: { n: 2 } }), ['d3', 'd5']);
        assert.deepEqual(await ids({ where: { kind: 'none' } }), []);
      });

      it('filters on membership with in', async () => {
        assert.deepEqual(await ids({ where: { kind: { in: ['b', 'c'] } } }), ['d2', 'd4', 'd6']);
        assert.deepEqual(await ids({ where: { n: { in: [1, 10, 42] } } }), ['d2', 'd4']);
        assert.deepEqual(await ids({ where: { kind: { in: ['a'] }, status: { in: ['pending', 'passed'] } } }), [
          'd1',
          'd3',
          'd5',
        ]);
      });

      it('orders ascending and descending, ties by document ID, leaving out documents without the field', async () => {
        assert.deepEqual(await ids({ orderBy: { field: 'n', direction: 'asc' } }), ['d2', 'd3', 'd5', 'd1', 'd4']);
        assert.deepEqual(await ids({ orderBy: { field: 'n', direction: 'desc' } }), ['d4', 'd1', 'd5', 'd3', 'd2']);
        assert.deepEqual(await ids({ where: { kind: 'a' }, orderBy: { field: 'n', direction: 'desc' } }), [
          'd1',
          'd5',
          'd3',
        ]);
      });

      it('orders numbers as numbers, not as text', async () => {
        await put(things, { big: { kind: 'z', n: 100, note: 'big' }, small: { kind: 'z', n: 9, note: 'small' } });
        assert.deepEqual(await ids({ where: { kind: 'z' }, orderBy: { field: 'n', direction: 'asc' } }), [
          'small',
          'big',
        ]);
      });

      it('limits', async () => {
        assert.deepEqual(await ids({ orderBy: { field: 'n', direction: 'desc' }, limit: 2 }), ['d4', 'd1']);
        assert.deepEqual(await ids({ where: { kind: 'a' }, orderBy: { field: 'n', direction: 'asc' }, limit: 1 }), [
          'd3',
        ]);
        assert.deepEqual(await ids({ limit: 3 }), ['d1', 'd2', 'd3']);
        await assert.rejects(store.query(things, { limit: 0 }), /limit/);
      });

      it('without a where, gives the whole collection in document ID order', async () => {
        assert.deepEqual(await ids(undefined), ['d1', 'd2', 'd3', 'd4', 'd5', 'd6']);
        assert.deepEqual(await store.query(others), []);
      });

      it('compares values as JSON: a number is not a string, a boolean is not a number', async () => {
        await put(things, {
          num: { kind: 'j', label: 1, note: 'num' },
          real: { kind: 'j', label: 1.0, note: 'real' },
          str: { kind: 'j', label: '1', note: 'str' },
          yes: { kind: 'j', label: true, note: 'yes' },
          no: { kind: 'j', label: false, note: 'no' },
          zero: { kind: 'j', label: 0, note: 'zero' },
        });
        assert.deepEqual(await ids({ where: { label: 1 } }), ['num', 'real']);
        assert.deepEqual(await ids({ where: { label: '1' } }), ['str']);
        assert.deepEqual(await ids({ where: { label: true } }), ['yes']);
        assert.deepEqual(await ids({ where: { label: false } }), ['no']);
        assert.deepEqual(await ids({ where: { label: 0 } }), ['zero']);
        assert.deepEqual(await ids({ where: { label: { in: [1, true] } } }), ['num', 'real', 'yes']);
        assert.deepEqual(await ids({ where: { label: { in: ['1', false] } } }), ['no', 'str']);
        assert.deepEqual(await ids({ where: { label: { in: [true, 0] } } }), ['yes', 'zero']);
      });

      it('rejects fields that are not indexed, and oversized in lists', async () => {
        await assert.rejects(store.query(things, { where: { note: 'd1' } }), /not indexed/);
        await assert.rejects(store.query(things, { orderBy: { field: 'note', direction: 'asc' } }), /not indexed/);
        const many = Array.from({ length: 31 }, (_, i) => `k${i}`);
        await assert.rejects(store.query(things, { where: { kind: { in: many } } }), /30/);
        await assert.rejects(store.query(things, { where: { kind: { in: [] } } }), /in/);
        assert.equal((await store.query(things, { where: { kind: { in: many.slice(0, 30) } } })).length, 0);
      });

      it('queries the pipeline collections on their indexed fields', async () => {
        await store.transaction(async (tx) => {
          tx.set(collections.builds, 'b1', buildFixture('b1', 1, 'passed'));
          tx.set(collections.builds, 'b2', buildFixture('b2', 2, 'running'));
          tx.set(collections.builds, 'b3', buildFixture('b3', 3, 'queued'));
        });
        const active = await store.query(collections.builds, {
          where: { repo: 'go', status: { in: ['queued', 'running'] } },
          orderBy: { field: 'seq', direction: 'desc' },
        });
        assert.deepEqual(
          active.map((b) => b.id),
          ['b3', 'b2'],
        );
        await assert.rejects(store.query(collections.builds, { where: { builder: 'linux' } }), /not indexed/);
      });
    });

    describe('transaction', () => {
      it('returns what its function returns', async () => {
        assert.deepEqual(await store.transaction(async () => ({ answer: 42 })), { answer: 42 });
        await put(things, { a: { kind: 'x', n: 5 } });
        assert.equal(await store.transaction(async (tx) => (await tx.get(things, 'a'))?.n), 5);
      });

      it('writes nothing when its function throws', async () => {
        await put(things, { a: { kind: 'x', n: 1 } });
        await assert.rejects(
          store.transaction(async (tx) => {
            const a = await tx.get(things, 'a');
            tx.set(things, 'a', { kind: 'x', n: (a?.n ?? 0) + 1 });
            tx.set(things, 'b', { kind: 'new' });
            tx.delete(things, 'a');
            throw new Error('changed my mind');
          }),
          /changed my mind/,
        );
        assert.deepEqual(await store.get(things, 'a'), { kind: 'x', n: 1 });
        assert.equal(await store.get(things, 'b'), undefined);
      });

      it('lands all writes together: a read waiting on the transaction sees all of them', async () => {
        await put(things, { gone: { kind: 'x' } });
        let wroteFirst!: () => void;
        const firstWritten = new Promise<void>((resolve) => (wroteFirst = resolve));
        const running = store.transaction(async (tx) => {
          tx.set(things, 'a', { kind: 'x', n: 1 });
          wroteFirst();
          await new Promise((resolve) => setTimeout(resolve, 20));
          tx.set(things, 'b', { kind: 'x', n: 2 });
          tx.delete(things, 'gone');
          tx.set(things, 'a', { kind: 'x', n: 3 });
        });
        await firstWritten;
        const [a, b, gone] = await Promise.all([
          store.get(things, 'a'),
          store.get(things, 'b'),
          store.get(things, 'gone'),
          running,
        ]);
        assert.equal(a?.n, 3, 'the last write to a document wins');
        assert.equal(b?.n, 2);
        assert.equal(gone, undefined);
      });

      it('rejects a read after a write, and writes nothing', async () => {
        await assert.rejects(
          store.transaction(async (tx) => {
            tx.set(things, 'a', { kind: 'x' });
            await tx.get(things, 'b');
          }),
          /reads must come before writes/,
        );
        await assert.rejects(
          store.transaction(async (tx) => {
            tx.delete(things, 'a');
            await tx.get(things, 'a');
          }),
          /reads must come before writes/,
        );
        assert.equal(await store.get(things, 'a'), undefined);
      });

      it('refuses documents that are not JSON objects, and bad IDs', async () => {
        await assert.rejects(
          store.transaction(async (tx) => tx.set(things, 'a', [1, 2] as unknown as Thing)),
          /JSON object/,
        );
        await assert.rejects(
          store.transaction(async (tx) => tx.set(things, 'a/b', { kind: 'x' })),
          /document ID/,
        );
        await assert.rejects(store.get(things, ''), /document ID/);
        assert.deepEqual(await store.query(things), []);
      });

      it('runs 50 concurrent read-modify-write transactions on one counter without losing one', async () => {
        await put(things, { counter: { kind: 'counter', n: 0 } });
        await Promise.all(
          Array.from({ length: 50 }, () =>
            store.transaction(async (tx) => {
              const counter = await tx.get(things, 'counter');
              await new Promise((resolve) => setImmediate(resolve));
              tx.set(things, 'counter', { kind: 'counter', n: (counter?.n ?? 0) + 1 });
            }),
          ),
        );
        assert.equal((await store.get(things, 'counter'))?.n, 50);
      });

      it('lets exactly one of two concurrent compare-and-sets win', async () => {
        await put(things, { task: { kind: 'task', status: 'pending' } });
        const launch = (by: string): Promise<boolean> =>
          store.transaction(async (tx) => {
            const task = await tx.get(things, 'task');
            if (task?.status !== 'pending') return false;
            await new Promise((resolve) => setImmediate(resolve));
            tx.set(things, 'task', { ...task, status: 'launched', note: by });
            return true;
          });
        const results = await Promise.all([launch('one'), launch('two')]);
        assert.deepEqual(
          results.filter((won) => won),
          [true],
        );
        const task = await store.get(things, 'task');
        assert.equal(task?.status, 'launched');
        assert.equal(task?.note, results[0] ? 'one' : 'two');
      });

      it('keeps working after a failed transaction', async () => {
        await assert.rejects(store.transaction(() => Promise.reject(new Error('first fails'))), /first fails/);
        await put(things, { a: { kind: 'x' } });
        assert.equal((await store.get(things, 'a'))?.kind, 'x');
      });

      it('rejects use of tx after its function returned', async () => {
        let leaked: Parameters<Parameters<StateStore['transaction']>[0]>[0] | undefined;
        await store.transaction(async (tx) => {
          leaked = tx;
        });
        assert.throws(() => leaked?.set(things, 'late', { kind: 'x' }), /finished/);
        assert.equal(await store.get(things, 'late'), undefined);
      });
    });

    it('rejects operations after close', async () => {
      await store.close();
      await assert.rejects(store.get(things, 'a'), /closed/);
      await assert.rejects(store.query(things), /closed/);
      await assert.rejects(store.transaction(async () => 1), /closed/);
    });
  });
}
