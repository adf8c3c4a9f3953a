import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Firestore } from '@google-cloud/firestore';
import { createFirestoreState } from '../../shared/adapters/gcp/firestore-state.ts';
import { RetryableError } from '../../shared/core/errors.ts';
import { collections, type Collection } from '../../shared/ports/state.ts';
import { emulatorMissing, firestoreEmulatorProject } from '../helpers/emulators.ts';
import { buildFixture, stateContract } from './state.contract.ts';

const missing = emulatorMissing('firestore');

if (missing) {
  describe('StateStore contract: firestore', () => {
    it('runs against the Firestore emulator', { skip: missing }, () => {});
  });
} else {
  stateContract('firestore', async () => {
    const { firestore, drop } = await firestoreEmulatorProject();
    const store = createFirestoreState({ firestore, prefix: 'hermetic-' });
    return {
      store,
      async cleanup() {
        await store.close();
        await drop();
      },
    };
  });
}

describe('firestore state, beyond the contract', { skip: missing }, () => {
  const withStore = async (
    fn: (store: ReturnType<typeof createFirestoreState>, firestore: Firestore) => Promise<void>,
    options: { prefix?: string; maxAttempts?: number } = {},
  ): Promise<void> => {
    const { firestore, drop } = await firestoreEmulatorProject();
    const store = createFirestoreState({ firestore, ...options });
    try {
      await fn(store, firestore);
    } finally {
      await store.close();
      await drop();
    }
  };

  it('stores the JSON text and the indexed scalar fields, under the prefixed collection', () =>
    withStore(
      async (store, firestore) => {
        const build = { ...buildFixture('b1', 7, 'queued'), tree: 't', nested: [[1, 2], { '': 'empty key' }] };
        await store.transaction(async (tx) => tx.set(collections.builds, 'b1', build));
        const raw = (await firestore.collection('pre-builds').doc('b1').get()).data();
        assert.deepEqual(raw, { json: JSON.stringify(build), repo: 'go', commit: 'c7', status: 'queued', seq: 7 });
        assert.deepEqual(await store.get(collections.builds, 'b1'), build, 'nested arrays and empty keys round-trip');
        assert.equal((await firestore.collection('builds').get()).size, 0, 'nothing outside the prefix');
      },
      { prefix: 'pre-' },
    ));

  it('refuses document IDs Firestore would misread', () =>
    withStore(async (store) => {
      for (const id of ['', '.', '..', 'a/b', '__id__', '____', 'x'.repeat(1501)]) {
        await assert.rejects(
          store.transaction(async (tx) => tx.set(collections.builds, id, buildFixture('x', 1, 'queued'))),
          /invalid document ID/,
          `set ${id.slice(0, 20)}`,
        );
        await assert.rejects(store.get(collections.builds, id), /invalid document ID/, `get ${id.slice(0, 20)}`);
      }
      await store.transaction(async (tx) => {
        tx.set(collections.builds, '__x', buildFixture('__x', 1, 'queued'));
        tx.set(collections.builds, '__', buildFixture('__', 1, 'queued'));
      });
      assert.equal((await store.get(collections.builds, '__x'))?.id, '__x', 'a leading __ alone is fine');
      assert.equal((await store.get(collections.builds, '__'))?.id, '__');
    }));

  it('applies in-lists past 30 disjunctions itself, with JSON equality, and keeps order and limit', () =>
    withStore(async (store) => {
      const things: Collection<{ kind: string; n: number; label: string | number }> = {
        name: 'wide',
        indexed: ['kind', 'n', 'label'],
      };
      await store.transaction(async (tx) => {
        for (let i = 0; i < 12; i++) tx.set(things, `d${String(i).padStart(2, '0')}`, { kind: `k${i % 6}`, n: i, label: i % 2 ? 1 : '1' });
      });
      const kinds = Array.from({ length: 6 }, (_, i) => `k${i}`);
      const ns = Array.from({ length: 12 }, (_, i) => i);
      // 6 x 12 = 72 disjunctions: more than Firestore takes in one query.
      const all = await store.query(things, { where: { kind: { in: kinds }, n: { in: ns } }, orderBy: { field: 'n', direction: 'desc' } });
      assert.deepEqual(all.map((d) => d.n), [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
      const some = await store.query(things, {
        where: { kind: { in: kinds }, n: { in: ns }, label: { in: [1, 2, 3, 4, 5, 6] } },
        orderBy: { field: 'n', direction: 'asc' },
        limit: 3,
      });
      assert.deepEqual(some.map((d) => d.n), [1, 3, 5], 'label 1 is not label "1"');
      const repeated = await store.query(things, { where: { kind: { in: ['k1', 'k1', 'k2'] }, label: { in: [1, 1, '1'] } } });
      assert.deepEqual(repeated.map((d) => d.n), [1, 2, 7, 8], 'repeated values match once');
    }));

  it('queues the retries of colliding transactions in one process instead of letting them abort each other', () =>
    withStore(async (store, firestore) => {
      let attempts = 0;
      const run = firestore.runTransaction.bind(firestore);
      firestore.runTransaction = ((fn, options) =>
        run((tx) => {
          attempts += 1;
          return fn(tx);
        }, options)) as Firestore['runTransaction'];
      await store.transaction(async (tx) => tx.set(collections.builds, 'hot', buildFixture('hot', 0, 'queued')));
      attempts = 0;
      await Promise.all(
        Array.from({ length: 30 }, () =>
          store.transaction(async (tx) => {
            const build = await tx.get(collections.builds, 'hot');
            await new Promise((resolve) => setImmediate(resolve));
            tx.set(collections.builds, 'hot', { ...buildFixture('hot', 0, 'queued'), attempts: (build?.attempts ?? 0) + 1 });
          }),
        ),
      );
      assert.equal((await store.get(collections.builds, 'hot'))?.attempts, 30);
      // Each loser of the first round retries once, alone; without the turn they took about 4 attempts each.
      assert.ok(attempts <= 2 * 30 + 5, `${attempts} attempts for 30 transactions`);
    }));

  it('gives up on endless contention with a RetryableError', () =>
    withStore(
      async (store) => {
        await store.transaction(async (tx) => tx.set(collections.builds, 'hot', buildFixture('hot', 0, 'queued')));
        const results = await Promise.allSettled(
          Array.from({ length: 10 }, () =>
            store.transaction(async (tx) => {
              const build = await tx.get(collections.builds, 'hot');
              await new Promise((resolve) => setImmediate(resolve));
              tx.set(collections.builds, 'hot', { ...buildFixture('hot', 0, 'queued'), attempts: (build?.attempts ?? 0) + 1 });
            }),
          ),
        );
        const failed = results.filter((r) => r.status === 'rejected');
        assert.ok(failed.length > 0, 'with one attempt each, some of 10 concurrent writers lose');
        for (const failure of failed) assert.ok(failure.reason instanceof RetryableError, String(failure.reason));
        const won = results.length - failed.length;
        assert.equal((await store.get(collections.builds, 'hot'))?.attempts, won, 'every winner counted, no loser');
      },
      { maxAttempts: 1 },
    ));
});
