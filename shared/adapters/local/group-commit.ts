import type { DatabaseSync } from 'node:sqlite';
import { BUSY_TIMEOUT_MS, preparedStatements } from './sqlite-database.ts';

/**
 * Group commit for one SQLite connection: every write made through it in one turn of the event loop (the state
 * store's transactions, the queue's publishes, pulls and acks) lands in one SQLite transaction, committed when the
 * turn ends, so a burst of them costs one journal write instead of one each. A write applies at once, inside a
 * savepoint of its own: later reads on the connection see it, and a write that throws undoes only itself. Its promise
 * resolves once the transaction has committed and rejects if the commit fails. A read resolves only once whatever it
 * may have seen of an open transaction is committed, so no caller ever acts on a write that is later rolled back.
 * Taking the write lock never blocks the event loop: SQLite's busy handler sleeps in the calling thread, which would
 * stall every handler, and deadlock with another connection of this process whose commit waits for the next turn. So
 * the lock is tried without waiting, and while another connection holds it, writes queue in order and the lock is
 * tried again on a timer, for as long as the busy timeout allows.
 */
export interface GroupCommit {
  /** Applies `write` and resolves with what it returned once that is durable. */
  write<R>(write: () => R): Promise<R>;
  /**
   * Applies `write` (at once when the connection may write, else as soon as another connection's lock is released)
   * and resolves once it is applied, with what it returned and the promise of its commit.
   */
  apply<R>(write: () => R): Promise<{ result: R; durable: Promise<void> }>;
  /** Runs `read` now and resolves with what it returned once what it saw is durable. */
  read<R>(read: () => R): Promise<R>;
  /**
   * The commit of the transaction open now (at once when none is): for a caller that reads under a lock of its own
   * and must wait for durability outside it, as `read` does.
   */
  durable(): Promise<void>;
  /** The transaction open now, as a token that no later transaction shares; undefined when none is. */
  current(): object | undefined;
  /** Commits the open transaction now, if there is one (before the connection is closed). */
  flush(): void;
}

interface Member {
  resolve(): void;
  reject(error: unknown): void;
}

/** The open transaction of a connection: who waits on its commit. */
interface Open {
  members: Member[];
}

const groups = new WeakMap<DatabaseSync, GroupCommit>();

/** The group commit of `db`: one per connection, shared by everything that writes to it. */
export function groupCommitOf(db: DatabaseSync): GroupCommit {
  let group = groups.get(db);
  if (group === undefined) {
    group = createGroupCommit(db);
    groups.set(db, group);
  }
  return group;
}

function createGroupCommit(db: DatabaseSync): GroupCommit {
  const prepared = preparedStatements(db);
  const run = (sql: string): void => {
    prepared(sql).run();
  };

  let open: Open | undefined;
  /** Writes waiting, in order, for the write lock another connection holds. */
  let waiting: Array<{ apply: () => void; fail: (error: unknown) => void }> = [];

  /** Takes the write lock without waiting for it: false when another connection holds it. */
  const tryBegin = (): boolean => {
    run('PRAGMA busy_timeout = 0');
    try {
      run('BEGIN IMMEDIATE');
    } catch (error) {
      if (isBusy(error)) return false;
      throw error;
    } finally {
      run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
    open = { members: [] };
    setImmediate(flush);
    return true;
  };

  /** Tries the lock again on a timer until it is taken (then applies what waited) or the busy timeout is spent. */
  const retry = (since: number, delayMs: number): void => {
    setTimeout(() => {
      const queued = waiting;
      let taken: boolean;
      try {
        taken = open !== undefined || tryBegin();
      } catch (error) {
        waiting = [];
        for (const entry of queued) entry.fail(error);
        return;
      }
      if (!taken) {
        if (Date.now() - since < BUSY_TIMEOUT_MS) return retry(since, Math.min(delayMs * 2, 50));
        waiting = [];
        const error = new Error(`database is locked: another connection held the write lock for over ${BUSY_TIMEOUT_MS} ms`);
        for (const entry of queued) entry.fail(error);
        return;
      }
      waiting = [];
      for (const entry of queued) entry.apply();
    }, delayMs);
  };

  /** Ends the open transaction: every member rejects with `error` (SQLite may have rolled it back already). */
  const abort = (error: unknown): void => {
    const ended = open;
    open = undefined;
    try {
      if (db.isOpen && db.isTransaction) run('ROLLBACK');
    } finally {
      for (const member of ended?.members ?? []) member.reject(error);
    }
  };

  const flush = (): void => {
    const ended = open;
    if (ended === undefined) return;
    try {
      run('COMMIT');
    } catch (error) {
      abort(error);
      return;
    }
    open = undefined;
    for (const member of ended.members) member.resolve();
  };

  const joined = (transaction: Open): Promise<void> =>
    new Promise<void>((resolve, reject) => transaction.members.push({ resolve, reject }));

  /** Applies `write` in its own savepoint of the open transaction; throws what it threw, having undone it. */
  const applyNow = <R>(write: () => R): { result: R; durable: Promise<void> } => {
    const transaction = open;
    if (transaction === undefined) throw new Error('group commit: no transaction is open');
    run('SAVEPOINT member');
    let result: R;
    try {
      result = write();
    } catch (error) {
      if (db.isTransaction) {
        run('ROLLBACK TO member');
        run('RELEASE member');
      } else {
        // SQLite answered the failure by rolling back the whole transaction, the other members' writes with it.
        abort(error);
      }
      throw error;
    }
    run('RELEASE member');
    return { result, durable: joined(transaction) };
  };

  const apply = <R>(write: () => R): Promise<{ result: R; durable: Promise<void> }> =>
    new Promise((resolve, reject) => {
      const attempt = (): void => {
        try {
          resolve(applyNow(write));
        } catch (error) {
          reject(error);
        }
      };
      try {
        if (open !== undefined || (waiting.length === 0 && tryBegin())) return attempt();
      } catch (error) {
        return reject(error);
      }
      waiting.push({ apply: attempt, fail: reject });
      if (waiting.length === 1) retry(Date.now(), 1);
    });

  return {
    apply,

    write<R>(write: () => R): Promise<R> {
      return apply(write).then(({ result, durable }) => durable.then(() => result));
    },

    read<R>(read: () => R): Promise<R> {
      try {
        const result = read();
        return this.durable().then(() => result);
      } catch (error) {
        return Promise.reject(error);
      }
    },

    durable(): Promise<void> {
      return open === undefined ? Promise.resolve() : joined(open);
    },

    current: () => open,

    flush,
  };
}

/** Whether SQLite refused for a lock another connection holds (SQLITE_BUSY, any extended code). */
function isBusy(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null && 'errcode' in error ? Number(error.errcode) : Number.NaN;
  return (code & 0xff) === 5;
}
