import type { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';

/** How often the background thread checkpoints; between two, the WAL holds what was committed meanwhile. */
const checkpointIntervalMs = 100;
/** SQLite's own default, restored if the background thread dies. */
const defaultAutoCheckpointPages = 1000;

/**
 * Moves the WAL checkpoints of `db` (opened at `path`) to a worker thread with its own connection. SQLite otherwise
 * runs one inside whichever commit takes the WAL past 1000 pages: it copies those pages into the database file and
 * syncs both files, blocking the event loop for milliseconds every few hundred commits. Durability is the same:
 * commits still append to the WAL as before, and a checkpoint only moves committed pages. If the thread dies, `db`
 * checkpoints by itself again, and `onFailure` hears why; a checkpoint that fails is reported once and retried.
 * `stop()` resolves once the thread has closed its connection, before `db` may be closed.
 */
export function startWalCheckpoints(db: DatabaseSync, path: string, onFailure: (reason: string) => void): { stop(): Promise<void> } {
  const worker = new Worker(new URL('./wal-checkpoint-worker.ts', import.meta.url), {
    workerData: { path, intervalMs: checkpointIntervalMs },
  });
  db.exec('PRAGMA wal_autocheckpoint = 0');
  let stopping = false;
  const exited = new Promise<void>((resolve) => {
    worker.once('exit', (code) => {
      if (!stopping && db.isOpen) {
        db.exec(`PRAGMA wal_autocheckpoint = ${defaultAutoCheckpointPages}`);
        onFailure(`the WAL checkpoint thread exited with ${code}`);
      }
      resolve();
    });
  });
  worker.on('error', (error) => onFailure(`the WAL checkpoint thread failed: ${error.message}`));
  worker.on('message', (message: { failed: string }) => onFailure(`a WAL checkpoint failed: ${message.failed}`));
  // The thread's timer alone must not keep this process alive.
  worker.unref();
  return {
    async stop() {
      stopping = true;
      // Waiting for it to close its connection must keep this process alive.
      worker.ref();
      worker.postMessage('stop');
      await exited;
    },
  };
}
