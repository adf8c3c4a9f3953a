import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openDatabase } from '../../shared/adapters/local/sqlite-database.ts';
import { createSqliteQueue } from '../../shared/adapters/local/sqlite-queue.ts';
import { createSqliteState } from '../../shared/adapters/local/sqlite-state.ts';
import type { SubscriptionOptions } from '../../shared/ports/messages.ts';
import { collections } from '../../shared/ports/state.ts';
import { createMemoryQueue } from '../fakes/memory-queue.ts';
import { openTempSqliteQueue } from '../helpers/sqlite-queue.ts';
import { queueContract } from './queue.contract.ts';

queueContract('sqlite', (now) => openTempSqliteQueue({ now }));

queueContract('memory', async (now) => {
  const queue = createMemoryQueue({ now });
  return { queue, cleanup: () => queue.close() };
});

describe('sqlite queue, beyond the contract', () => {
  const options: SubscriptionOptions = {
    ackDeadlineMs: 10_000,
    maxAttempts: 3,
    minBackoffMs: 1_000,
    maxBackoffMs: 5_000,
  };
  const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
  const decode = (data: Uint8Array): string => new TextDecoder().decode(data);

  it('keeps subscriptions, messages, leases and dead letters across closing and reopening the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-queue-'));
    try {
      const path = join(dir, 'hermetic.db');
      let clock = 1_000_000;
      const now = (): number => clock;

      const db = openDatabase(path);
      const queue = createSqliteQueue(db, { now });
      const state = createSqliteState(db);
      await queue.subscribe('t', 's', options);
      await queue.publish('t', encode('leased'), { n: '1' });
      await queue.publish('t', encode('waiting'));
      await queue.publish('t', encode('poison'));
      const [leased] = await queue.pull('s', 1);
      assert.ok(leased);
      const [poison] = (await queue.pull('s', 2)).filter((d) => decode(d.data) === 'poison');
      assert.ok(poison);
      await queue.deadLetter(poison, 'bad');
      assert.equal((await queue.backlog('s')).count, 2, 'leased and waiting (itself leased by the second pull)');
      await state.transaction(async (tx) =>
        tx.set(collections.branches, 'b', { repo: 'go', branch: 'main', head: 'abc', polledAt: 1 }),
      );
      await queue.close();
      await state.close();
      db.close();

      const reopened = openDatabase(path);
      const again = createSqliteQueue(reopened, { now });
      const stateAgain = createSqliteState(reopened);
      try {
        assert.equal((await stateAgain.get(collections.branches, 'b'))?.head, 'abc');
        assert.equal((await again.backlog('s')).count, 2);
        assert.deepEqual(await again.pull('s', 10), [], 'leases survive');
        const [letter] = await again.list();
        assert.equal(letter?.reason, 'bad');
        assert.equal(decode(letter.data), 'poison');
        await again.ack(leased);
        assert.equal((await again.backlog('s')).count, 1, 'an ack ID from before the reopen still acks');
        clock += options.ackDeadlineMs;
        const [redelivered, ...rest] = await again.pull('s', 10);
        assert.equal(rest.length, 0);
        assert.equal(decode(redelivered?.data ?? new Uint8Array()), 'waiting');
        assert.equal(redelivered?.attempt, 2);
        await again.publish('t', encode('after reopen'));
        assert.equal((await again.backlog('s')).count, 2, 'the subscription survives');
      } finally {
        await again.close();
        await stateAgain.close();
        reopened.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('makes the leases a dead consumer left due at once, when opened by the only consumer there is', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-queue-'));
    try {
      const path = join(dir, 'hermetic.db');
      const now = (): number => 1_000_000;
      const db = openDatabase(path);
      const queue = createSqliteQueue(db, { now });
      await queue.subscribe('t', 's', options);
      await queue.publish('t', encode('in flight'));
      assert.equal((await queue.pull('s', 1)).length, 1);
      // The consumer dies holding the lease: no ack, no nack, no close.
      db.close();

      const reopened = openDatabase(path);
      const again = createSqliteQueue(reopened, { now, releaseLeases: true });
      try {
        const [redelivered] = await again.pull('s', 10);
        assert.equal(decode(redelivered?.data ?? new Uint8Array()), 'in flight', 'due at once, not after its ack deadline');
        assert.equal(redelivered?.attempt, 2);
      } finally {
        await again.close();
        reopened.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
