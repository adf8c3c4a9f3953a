import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Firestore } from '@google-cloud/firestore';
import { createFirestoreDeadLetters } from '../../shared/adapters/gcp/firestore-dead-letters.ts';
import { openDatabase } from '../../shared/adapters/local/sqlite-database.ts';
import { createSqliteQueue } from '../../shared/adapters/local/sqlite-queue.ts';
import { createMemoryQueue } from '../fakes/memory-queue.ts';
import { emulatorHost, emulatorMissing } from '../helpers/emulators.ts';
import { deadLettersContract } from './dead-letters.contract.ts';

deadLettersContract('sqlite queue', async (now) => {
  const dir = await mkdtemp(join(tmpdir(), 'hermetic-dead-'));
  const db = openDatabase(join(dir, 'queue.db'));
  const queue = createSqliteQueue(db, { now });
  return {
    deadLetters: queue,
    async cleanup() {
      await queue.close();
      db.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

deadLettersContract('memory queue', async (now) => {
  const queue = createMemoryQueue({ now });
  return { deadLetters: queue, cleanup: () => queue.close() };
});

const missing = emulatorMissing('firestore');

/** A Firestore client of the emulator on a project of its own, and how to drop that project's documents. */
async function emulatorProject(): Promise<{ firestore: Firestore; drop(): Promise<void> }> {
  const host = await emulatorHost('firestore');
  const projectId = `hermetic-${randomUUID().slice(0, 8)}`;
  const firestore = new Firestore({ projectId, host, ssl: false });
  return {
    firestore,
    async drop() {
      await firestore.terminate();
      const url = `http://${host}/emulator/v1/projects/${projectId}/databases/(default)/documents`;
      assert.ok((await fetch(url, { method: 'DELETE' })).ok);
    },
  };
}

if (missing) {
  describe('DeadLetters contract: firestore', () => {
    it('runs against the Firestore emulator', { skip: missing }, () => {});
  });
} else {
  deadLettersContract('firestore', async (now) => {
    const { firestore, drop } = await emulatorProject();
    return { deadLetters: createFirestoreDeadLetters({ firestore, prefix: 'hermetic-', now }), cleanup: drop };
  });
}

describe('firestore dead letters, beyond the contract', { skip: missing }, () => {
  it('keeps them in the prefixed deadLetters collection, and cuts data past 512 KiB, saying so', async () => {
    const { firestore, drop } = await emulatorProject();
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
