import type { DatabaseSync, StatementSync } from 'node:sqlite';

/**
 * Group commit for one SQLite connection: every write made through it in one turn of the event loop (the state
 * store's transactions, the queue's publishes, pulls and acks) lands in one SQLite transaction, committed when the
 * turn ends, so a burst of them costs one journal write instead of one each. A write applies at once, inside a
 * savepoint of its own: later reads on the connection see it, and a write that throws undoes only itself. Its promise
 * resolves once the transaction has committed and rejects if the commit fails. A read resolves only once whatever it
 * may have seen of an open transaction is committed, so no caller ever acts on a write that is later rolled back.
 */
export interface GroupCommit {
  /** Applies `write` now and resolves with what it returned once that is durable. */
  write<R>(write: () => R): Promise<R>;
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
  const statements = new Map<string, StatementSync>();
  const run = (sql: string): void => {
    let statement = statements.get(sql);
    if (statement === undefined) {
      statement = db.prepare(sql);
      statements.set(sql, statement);
    }
    statement.run();
  };

  let open: Open | undefined;

  const begin = (): Open => {
    if (open !== undefined) return open;
    run('BEGIN IMMEDIATE');
    open = { members: [] };
    setImmediate(flush);
    return open;
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

  return {
    write<R>(write: () => R): Promise<R> {
      let transaction: Open;
      let result: R;
      try {
        transaction = begin();
        run('SAVEPOINT member');
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
      } catch (error) {
        return Promise.reject(error);
      }
      return joined(transaction).then(() => result);
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
