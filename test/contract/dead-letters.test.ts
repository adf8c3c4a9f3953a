import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createFirestoreDeadLetters } from '../../shared/adapters/gcp/firestore-dead-letters.ts';
import { createMemoryQueue } from '../fakes/memory-queue.ts';
import { emulatorMissing, firestoreEmulatorProject } from '../helpers/emulators.ts';
import { openTempSqliteQueue } from '../helpers/sqlite-queue.ts';
import { deadLettersContract } from './dead-letters.contract.ts';

deadLettersContract('sqlite queue', async (now) => {
  const { queue, cleanup } = await openTempSqliteQueue({ now });
  return { deadLetters: queue, cleanup };
});

deadLettersContract('memory queue', async (now) => {
  const queue = createMemoryQueue({ now });
  return { deadLetters: queue, cleanup: () => queue.close() };
});

const missing = emulatorMissing('firestore');

if (missing) {
  describe('DeadLetters contract: firestore', () => {
    it('runs against the Firestore emulator', { skip: missing }, () => {});
  });
} else {
  deadLettersContract('firestore', async (now) => {
    const { firestore, drop } = await firestoreEmulatorProject();
    return { deadLetters: createFirestoreDeadLetters({ firestore, prefix: 'hermetic-', now }), cleanup: drop };
  });
}

describe('firestore dead letters, beyond the contract', { skip: missing }, () => {
  it('keeps them in the prefixed deadLetters collection, and cuts data past 512 KiB, saying so', async () => {
    const { firestore, drop } = await firestoreEmulatorProject();
    try {
      const deadLetters = createFirestoreDeadLetters({ firestore, prefix: 'x-', now: () => 5 });
      const big = new Uint8Array(600 * 1024).fill(7);
      await deadLetters.record({ topic: 't', subscription: 's', data: big, attributes: {}, attempts: 1, reason: 'too big' });
      const [letter] = await deadLetters.list();
      assert.equal(letter?.data.byteLength, 512 * 1024);
      assert.equal(letter?.data[0], 7);
      assert.equal(letter?.reason, `too big (data cut to ${512 * 1024} of ${600 * 1024} bytes)`);
      assert.equal((await firestore.collection('x-deadLetters').get()).size, 1);
    } finally {
      await drop();
    }
  });
});
