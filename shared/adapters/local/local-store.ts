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
 * Opens (creating when absent) the local pipeline's database in `dataDir`. The runtime, which holds the directory's
 * lock (`owner`), makes the deliveries a dead runtime had leased due again at once; a command that opens the store
 * beside a running runtime (`hermetic try`) must not, or it would take the live runtime's leases away. Its WAL is
 * checkpointed by a thread of its own (see startWalCheckpoints), which reports trouble to `onCheckpointFailure`.
 */
export function openLocalStore(dataDir: string, options: { owner: boolean; onCheckpointFailure: (reason: string) => void }): LocalStore {
  const path = localDatabasePath(dataDir);
  const db = openDatabase(path);
  const state = createSqliteState(db);
  const queue = createSqliteQueue(db, { releaseLeases: options.owner });
  const checkpoints = startWalCheckpoints(db, path, options.onCheckpointFailure);
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
