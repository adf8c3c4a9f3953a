import { readFile, rm, writeFile } from 'node:fs/promises';
import { DatabaseSync } from 'node:sqlite';
import { describeError } from './core/errors.ts';

/** SQLite's "database is locked". */
const sqliteBusy = 5;

/** A lock this process holds. */
export interface HeldLock {
  release(): Promise<void>;
}

/** What `tryFileLock` got: the lock, or the holder's process ID as it wrote it (undefined if not yet written). */
export type LockAttempt = { held: HeldLock } | { holder: number | undefined };

/**
 * Tries once, without waiting, to take the lock at `path`. The lock is an exclusive SQLite transaction held open on
 * `<path>.sqlite`: a file lock that the operating system drops when its holder dies, however it dies, so no stale
 * lock survives a crash or a reboot and a reused process ID means nothing. `<path>` only names the holder, for
 * messages. The directory must exist. Throws when the lock file cannot be opened.
 */
export async function tryFileLock(path: string): Promise<LockAttempt> {
  const db = new DatabaseSync(`${path}.sqlite`);
  try {
    db.exec('PRAGMA busy_timeout = 0; BEGIN EXCLUSIVE');
  } catch (error) {
    db.close();
    if ((error as { errcode?: number }).errcode !== sqliteBusy) {
      throw new Error(`cannot take the lock ${path}: ${describeError(error)}`, { cause: error });
    }
    const holder = (await readFile(path, 'utf8').catch(() => '')).trim();
    return { holder: /^\d+$/.test(holder) ? Number(holder) : undefined };
  }
  await writeFile(path, `${process.pid}\n`);
  let released = false;
  return {
    held: {
      async release() {
        if (released) return;
        released = true;
        await rm(path, { force: true });
        db.exec('ROLLBACK');
        db.close();
      },
    },
  };
}
