import { DatabaseSync, type StatementSync } from 'node:sqlite';

/** How long a statement waits for another connection's lock before failing with SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5000;

/**
 * Opens (creating if missing) the SQLite database at `path`, or a private in-memory one for `':memory:'`, set up for
 * the embedded runtime: WAL journal, synchronous=NORMAL (a commit survives a crash of the process, though the last
 * ones may be lost if the machine loses power), a busy timeout, foreign keys on. The caller owns the connection and
 * closes it. Throws an Error naming the path when the file cannot be opened or will not use WAL.
 */
export function openDatabase(path: string): DatabaseSync {
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { enableForeignKeyConstraints: true });
  } catch (error) {
    throw new Error(`cannot open database ${path}: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
  try {
    // The busy timeout first: everything after it may wait on another connection's lock.
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const mode = db.prepare('PRAGMA journal_mode = WAL').get()?.['journal_mode'];
    // An in-memory database has no journal file; anywhere else, WAL is what lets readers and the writer overlap
    // and keeps commits cheap, so a file system that refuses it is reported rather than silently slower.
    if (path !== ':memory:' && mode !== 'wal') {
      throw new Error(`journal_mode is ${String(mode)}, not wal (does the file system support shared memory?)`);
    }
    db.exec('PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;');
    gatherStatistics(db);
  } catch (error) {
    db.close();
    throw new Error(`cannot set up database ${path}: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
  return db;
}

/**
 * Gathers planner statistics for tables that have grown since they were last measured (cheap when none has). Only an
 * optimisation: ANALYZE needs the write lock, and while another process (a running `hermetic up`) commits, SQLite can
 * refuse it at once, busy timeout or not, when this connection's snapshot went stale. Then the next opening gathers them.
 */
function gatherStatistics(db: DatabaseSync): void {
  try {
    db.exec('PRAGMA optimize = 0x10002');
  } catch (error) {
    if (!/database is locked|SQLITE_BUSY/i.test(error instanceof Error ? error.message : String(error))) throw error;
  }
}

/** A statement cache for `db`: each SQL text is prepared once, on first use. */
export function preparedStatements(db: DatabaseSync): (sql: string) => StatementSync {
  const statements = new Map<string, StatementSync>();
  return (sql) => {
    let statement = statements.get(sql);
    if (statement === undefined) {
      statement = db.prepare(sql);
      statements.set(sql, statement);
    }
    return statement;
  };
}
