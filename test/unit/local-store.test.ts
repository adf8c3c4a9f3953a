import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openLocalStore } from '../../shared/adapters/local/local-store.ts';

const subscription = { ackDeadlineMs: 60_000, maxAttempts: 5, minBackoffMs: 10, maxBackoffMs: 10 };

describe('the local store', () => {
  it('is opened by a command beside the running runtime without taking away its leases; its owner releases a dead one\'s', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-store-'));
    const noFailure = (reason: string) => assert.fail(reason);
    const runtime = openLocalStore(dir, { owner: true, onCheckpointFailure: noFailure });
    try {
      await runtime.queue.subscribe('t', 's', subscription);
      await runtime.queue.publish('t', Buffer.from('in hand'));
      const [leased] = await runtime.queue.pull('s', 1);
      assert.ok(leased);
      // `hermetic try` opening the same file: the runtime's lease stands, so nothing is delivered twice.
      const command = openLocalStore(dir, { owner: false, onCheckpointFailure: noFailure });
      await command.close();
      assert.deepEqual(await runtime.queue.pull('s', 1), [], 'the lease is still the runtime\'s');
    } finally {
      await runtime.close();
    }
    // A runtime that opens the file after its predecessor died (it holds the directory's lock) takes the lease back.
    const next = openLocalStore(dir, { owner: true, onCheckpointFailure: noFailure });
    try {
      await next.queue.subscribe('t', 's', subscription);
      const [again] = await next.queue.pull('s', 1);
      assert.equal(again?.attempt, 2);
    } finally {
      await next.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
