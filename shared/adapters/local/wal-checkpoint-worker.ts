// Runs in a worker thread started by wal-checkpoints.ts: checkpoints the WAL of the database at workerData.path every
// workerData.intervalMs until told to stop, over a connection of its own.
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

const { path, intervalMs } = workerData as { path: string; intervalMs: number };
const db = new DatabaseSync(path);
// As the opener's connection: the WAL is synced before its frames are copied, the database file after.
db.exec('PRAGMA synchronous = NORMAL');
// PASSIVE takes no lock that a reader or the writer waits for, and copies only what no reader still needs.
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
let reported = false;
const timer = setInterval(() => {
  try {
    checkpoint.get();
    reported = false;
  } catch (error) {
    // A full disk, say: the frames stay in the WAL, which is as durable; tried again next time, reported once.
    if (!reported) parentPort?.postMessage({ failed: error instanceof Error ? error.message : String(error) });
    reported = true;
  }
}, intervalMs);
parentPort?.once('message', () => {
  clearInterval(timer);
  db.close();
  parentPort?.close();
});
