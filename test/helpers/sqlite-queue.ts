import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../shared/adapters/local/sqlite-database.ts';
import { createSqliteQueue, type SqliteQueueOptions } from '../../shared/adapters/local/sqlite-queue.ts';
import type { MessageQueue } from '../../shared/ports/messages.ts';

/** A sqlite queue on a fresh database in a temporary folder; cleanup() closes both and removes the folder. */
export async function openTempSqliteQueue(options: SqliteQueueOptions = {}): Promise<{ queue: MessageQueue; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'hermetic-queue-'));
  const db = openDatabase(join(dir, 'queue.db'));
  const queue = createSqliteQueue(db, options);
  return {
    queue,
    async cleanup() {
      await queue.close();
      db.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
