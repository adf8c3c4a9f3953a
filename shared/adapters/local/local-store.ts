import { join } from 'node:path';
import type { MessageQueue } from '../../ports/messages.ts';
import type { StateStore } from '../../ports/state.ts';
import { openDatabase } from './sqlite-database.ts';
import { createSqliteQueue } from './sqlite-queue.ts';
import { createSqliteState } from './sqlite-state.ts';

/** The local pipeline's state and queue: one SQLite file in its data directory. */
export interface LocalStore {
  state: StateStore;
  queue: MessageQueue;
  /** Closes the state, the queue, then the file. */
  close(): Promise<void>;
}

/** Where the local pipeline keeps its database under its data directory. */
export function localDatabasePath(dataDir: string): string {
  return join(dataDir, 'hermetic.db');
}

/**
 * Opens (creating when absent) the local pipeline's database in `dataDir`, holding the directory's lock: deliveries
 * a dead runtime had leased are due again at once.
 */
export function openLocalStore(dataDir: string): LocalStore {
  const db = openDatabase(localDatabasePath(dataDir));
  const state = createSqliteState(db);
  const queue = createSqliteQueue(db, { releaseLeases: true });
  return {
    state,
    queue,
    async close() {
      await state.close();
      await queue.close();
      db.close();
    },
  };
}
