import { join } from 'node:path';
import type { MessageQueue } from '../../ports/messages.ts';
import type { StateStore } from '../../ports/state.ts';
import { groupCommitOf } from './group-commit.ts';
import { openDatabase } from './sqlite-database.ts';
import { createSqliteQueue } from './sqlite-queue.ts';
import { createSqliteState } from './sqlite-state.ts';
import { startWalCheckpoints } from './wal-checkpoints.ts';

/** The local pipeline's state and queue: one SQLite file in its data directory. */
export interface LocalStore {
  state: StateStore;
  queue: MessageQueue;
  /** Closes the state, the queue, then the file, once what they wrote is committed. */
  close(): Promise<void>;
}

/** Where the local pipeline keeps its database under its data directory. */
export function localDatabasePath(dataDir: string): string {
  return join(dataDir, 'hermetic.db');
}

/**
 * Opens (creating when absent) the local pipeline's database in `dataDir`, holding the directory's lock: deliveries
 * a dead runtime had leased are due again at once. Its WAL is checkpointed by a thread of its own (see
 * startWalCheckpoints), which reports trouble to `onCheckpointFailure`.
 */
export function openLocalStore(dataDir: string, onCheckpointFailure: (reason: string) => void): LocalStore {
  const path = localDatabasePath(dataDir);
  const db = openDatabase(path);
  const state = createSqliteState(db);
  const queue = createSqliteQueue(db, { releaseLeases: true });
  const checkpoints = startWalCheckpoints(db, path, onCheckpointFailure);
  return {
    state,
    queue,
    async close() {
      await state.close();
      await queue.close();
      await checkpoints.stop();
      groupCommitOf(db).flush();
      db.close();
    },
  };
}
