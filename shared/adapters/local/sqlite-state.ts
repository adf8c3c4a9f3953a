import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import {
  collections,
  type Collection,
  type Query,
  type Scalar,
  type StateStore,
  type Transaction,
} from '../../ports/state.ts';
import { checkDocumentId, createLock, runBufferedTransaction, type BufferedWrite } from '../buffered-transaction.ts';
import { checkCollectionName, checkIndexedField, checkQuery } from '../query-checks.ts';
import { groupCommitOf } from './group-commit.ts';
import { preparedStatements } from './sqlite-database.ts';

// Collection names and indexed fields are spliced into SQL (a partial index is only used when the query names
// the same literal), so they are held to plain identifiers; no '_' in collection names keeps index names
// (documents_<collection>_<field>) unambiguous.

/**
 * A state store in one table of the given database: documents as JSON text keyed by (collection, id), with a
 * partial expression index on each indexed field of each collection. Every operation, reads included, waits its
 * turn behind one async lock, so a transaction sees no other operation of this store between its reads and the
 * application of its writes, all together, at its end. Writes join the connection's group commit (see
 * group-commit.ts): the lock is released once they are applied, and an operation resolves once what it wrote or read
 * is durable. Because of the lock, calling the store (not `tx`) from inside a transaction's function waits forever.
 * The store does not own `db`: `close()` only makes later operations reject; whoever opened the database closes it.
 * Schema errors throw here; failed operations reject.
 */
export function createSqliteState(db: DatabaseSync): StateStore {
  db.exec(`CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (collection, id)
  )`);

  const prepared = preparedStatements(db);

  const indexed = new Set<string>();
  const ensureIndexes = (collection: Collection<unknown>): void => {
    for (const field of collection.indexed) {
      const key = `${collection.name}\0${field}`;
      if (indexed.has(key)) continue;
      checkCollectionName(collection.name);
      checkIndexedField(collection.name, field);
      db.exec(
        `CREATE INDEX IF NOT EXISTS "${indexName(collection.name, field)}" ` +
          `ON documents (${extract(field)}, id) WHERE collection = '${collection.name}'`,
      );
      indexed.add(key);
    }
  };
  for (const collection of Object.values(collections)) ensureIndexes(collection);

  const exclusive = createLock();
  let closed = false;
  const assertOpen = (): void => {
    if (closed) throw new Error('state store is closed');
  };

  const read = <T>(collection: Collection<T>, id: string): T | undefined => {
    checkId(collection, id);
    const row = prepared('SELECT data FROM documents WHERE collection = ? AND id = ?').get(collection.name, id);
    return row === undefined ? undefined : parseDocument<T>(row['data']);
  };

  const group = groupCommitOf(db);
  const upsert = (write: BufferedWrite): void => {
    if (write.data === undefined) prepared('DELETE FROM documents WHERE collection = ? AND id = ?').run(write.collection, write.id);
    else {
      prepared(
        'INSERT INTO documents (collection, id, data) VALUES (?, ?, ?) ' +
          'ON CONFLICT (collection, id) DO UPDATE SET data = excluded.data',
      ).run(write.collection, write.id, write.data);
    }
  };

  // What is applied but not yet committed, by document and by collection: an operation that saw any of it resolves
  // only once it is durable, while one that saw none of it need not wait for the group commit.
  let unsettledIn: object | undefined;
  const unsettled = new Set<string>();
  const applied = (keys: readonly string[]): void => {
    if (unsettledIn !== group.current()) {
      unsettled.clear();
      unsettledIn = group.current();
    }
    for (const key of keys) unsettled.add(key);
  };
  const settledAfter = (keys: readonly string[]): Promise<void> =>
    unsettledIn !== undefined && unsettledIn === group.current() && keys.some((key) => unsettled.has(key))
      ? group.durable()
      : Promise.resolve();
  const documentKey = (collection: string, id: string): string => `${collection}\0${id}`;

  /** Runs `operation` under the lock and waits, outside it, until what it read or wrote is durable. */
  const locked = async <R>(operation: () => Promise<{ result: R; durable: Promise<unknown> }> | { result: R; durable: Promise<unknown> }): Promise<R> => {
    const { result, durable } = await exclusive(async () => {
      assertOpen();
      return operation();
    });
    await durable;
    return result;
  };

  return {
    get<T>(collection: Collection<T>, id: string): Promise<T | undefined> {
      return locked(() => ({ result: read(collection, id), durable: settledAfter([documentKey(collection.name, id)]) }));
    },

    query<T>(collection: Collection<T>, query?: Query): Promise<T[]> {
      return locked(() => {
        ensureIndexes(collection);
        const { sql, params } = compileQuery(collection, query);
        const result = prepared(sql)
          .all(...params)
          .map((row) => parseDocument<T>(row['data']));
        return { result, durable: settledAfter([collection.name]) };
      });
    },

    transaction<R>(fn: (tx: Transaction) => Promise<R>): Promise<R> {
      return locked(async () => {
        const seen: string[] = [];
        const { result, writes } = await runBufferedTransaction(fn, {
          read: (collection, id) => {
            seen.push(documentKey(collection.name, id));
            return read(collection, id);
          },
          checkId,
        });
        if (writes.length === 0) return { result, durable: settledAfter(seen) };
        // Applied before the lock is let go, so the next operation reads them; they commit with whatever this read
        // of the open transaction.
        const { durable } = await group.apply(() => writes.forEach(upsert));
        applied(writes.flatMap((write) => [documentKey(write.collection, write.id), write.collection]));
        return { result, durable };
      });
    },

    close(): Promise<void> {
      return exclusive(() => {
        closed = true;
      });
    },
  };
}

/**
 * The SQL and parameters the store runs for `query` on `collection` (exported so tests can EXPLAIN it). Throws an
 * Error when a `where` or `orderBy` field is not indexed, an `in` list is empty or longer than 30, or a limit is not
 * a positive integer.
 */
export function compileQuery(
  collection: Collection<unknown>,
  query: Query = {},
): { sql: string; params: SQLInputValue[] } {
  checkCollectionName(collection.name);
  const params: SQLInputValue[] = [];
  const hasWhere = Object.keys(query.where ?? {}).length > 0;
  // Without statistics, SQLite takes `collection = ?` on the primary key for selective and would answer every
  // query from it, then sort. With a `where`, likely() marks that term as matching most rows (it does), so the
  // planner picks a field's partial index, and the literal still lets it see that the partial index applies.
  const conditions = [hasWhere ? `likely(collection = '${collection.name}')` : `collection = '${collection.name}'`];
  for (const [field, values] of checkQuery(collection, query)) {
    const expr = extract(field);
    conditions.push(values.length === 1 ? `${expr} = ?` : `${expr} IN (${values.map(() => '?').join(', ')})`);
    params.push(...values.map(sqlValue));
    const guard = typeGuard(field, values);
    if (guard !== undefined) {
      conditions.push(guard.sql);
      params.push(...guard.params);
    }
  }
  let from = 'documents';
  let order = 'ORDER BY id';
  if (query.orderBy !== undefined) {
    const { field, direction } = query.orderBy;
    // Firestore leaves out documents without the ordered field; ties go by document ID, in the same direction.
    conditions.push(`${extract(field)} IS NOT NULL`);
    const dir = direction === 'asc' ? 'ASC' : 'DESC';
    order = `ORDER BY ${extract(field)} ${dir}, id ${dir}`;
    // Ordered only: walking the field's index in order needs no sort and stops at the limit.
    if (!hasWhere) from = `documents INDEXED BY "${indexName(collection.name, field)}"`;
  }
  let sql = `SELECT data FROM ${from} WHERE ${conditions.join(' AND ')} ${order}`;
  if (query.limit !== undefined) {
    sql += ' LIMIT ?';
    params.push(query.limit);
  }
  return { sql, params };
}

function indexName(collection: string, field: string): string {
  return `documents_${collection}_${field}`;
}

function extract(field: string): string {
  return `json_extract(data, '$.${field}')`;
}

/**
 * json_extract turns JSON true and false into 1 and 0, so equality alone would match a boolean with a number.
 * These extra conditions keep JSON semantics: a boolean equals only a boolean, a number only a number.
 */
function typeGuard(field: string, values: readonly Scalar[]): { sql: string; params: SQLInputValue[] } | undefined {
  const type = `json_type(data, '$.${field}')`;
  const booleans = values.filter((value) => typeof value === 'boolean');
  if (booleans.length === 0) {
    return values.some((value) => typeof value === 'number')
      ? { sql: `${type} NOT IN ('true', 'false')`, params: [] }
      : undefined;
  }
  const others = values.filter((value) => typeof value !== 'boolean');
  const otherMatch = others.length === 0 ? '0' : `${extract(field)} IN (${others.map(() => '?').join(', ')})`;
  return {
    sql:
      `(CASE ${type} WHEN 'true' THEN ${booleans.includes(true) ? 1 : 0} ` +
      `WHEN 'false' THEN ${booleans.includes(false) ? 1 : 0} ELSE ${otherMatch} END)`,
    params: others.map(sqlValue),
  };
}

function sqlValue(value: Scalar): SQLInputValue {
  return typeof value === 'boolean' ? (value ? 1 : 0) : value;
}

function checkId(collection: Collection<unknown>, id: string): void {
  checkCollectionName(collection.name);
  checkDocumentId(collection, id);
}

function parseDocument<T>(data: unknown): T {
  if (typeof data !== 'string') throw new Error(`stored document is not text: ${typeof data}`);
  const doc: unknown = JSON.parse(data);
  return doc as T;
}
