import { checkDocumentId, createLock, runBufferedTransaction } from '../../shared/adapters/buffered-transaction.ts';
import { checkQuery } from '../../shared/adapters/query-checks.ts';
import type { Collection, Query, Scalar, StateStore, Transaction } from '../../shared/ports/state.ts';

/**
 * An in-memory state store with the SQLite adapter's semantics: documents kept as JSON text (so callers get copies),
 * every operation serialized behind one lock, transactions that read first, buffer their writes and apply them all at
 * once when the function returns (none if it throws), and queries only on indexed fields.
 */
export function createMemoryState(): StateStore {
  const data = new Map<string, Map<string, string>>();
  const exclusive = createLock();
  let closed = false;
  const assertOpen = (): void => {
    if (closed) throw new Error('state store is closed');
  };

  const read = <T>(collection: Collection<T>, id: string): T | undefined => {
    checkDocumentId(collection, id);
    const text = data.get(collection.name)?.get(id);
    return text === undefined ? undefined : parse<T>(text);
  };

  return {
    get<T>(collection: Collection<T>, id: string): Promise<T | undefined> {
      return exclusive(() => {
        assertOpen();
        return read(collection, id);
      });
    },

    query<T>(collection: Collection<T>, query: Query = {}): Promise<T[]> {
      return exclusive(() => {
        assertOpen();
        const filters = checkQuery(collection, query);
        const orderBy = query.orderBy;
        let rows: { id: string; doc: Record<string, unknown> }[] = [];
        for (const [id, text] of data.get(collection.name) ?? []) {
          const doc = parse<Record<string, unknown>>(text);
          if (filters.every(([field, values]) => values.some((value) => jsonEquals(doc[field], value)))) {
            rows.push({ id, doc });
          }
        }
        if (orderBy === undefined) {
          rows.sort((a, b) => compareText(a.id, b.id));
        } else {
          const sign = orderBy.direction === 'asc' ? 1 : -1;
          // Like Firestore (and the SQLite adapter), documents without the field are left out.
          rows = rows.filter((row) => row.doc[orderBy.field] !== undefined && row.doc[orderBy.field] !== null);
          rows.sort(
            (a, b) => sign * (compareValues(a.doc[orderBy.field], b.doc[orderBy.field]) || compareText(a.id, b.id)),
          );
        }
        if (query.limit !== undefined) rows = rows.slice(0, query.limit);
        return rows.map((row) => row.doc as T);
      });
    },

    transaction<R>(fn: (tx: Transaction) => Promise<R>): Promise<R> {
      return exclusive(async () => {
        assertOpen();
        const { result, writes } = await runBufferedTransaction(fn, { read, checkId: checkDocumentId });
        for (const write of writes) {
          let docs = data.get(write.collection);
          if (docs === undefined) {
            docs = new Map();
            data.set(write.collection, docs);
          }
          if (write.data === undefined) docs.delete(write.id);
          else docs.set(write.id, write.data);
        }
        return result;
      });
    },

    close(): Promise<void> {
      return exclusive(() => {
        closed = true;
      });
    },
  };
}

function jsonEquals(stored: unknown, value: Scalar): boolean {
  return typeof stored === typeof value && stored === value;
}

/** SQLite's order for what json_extract yields: numbers (booleans as 0 and 1), then text (objects as JSON). */
function compareValues(a: unknown, b: unknown): number {
  const sa = sortable(a);
  const sb = sortable(b);
  if (typeof sa === 'number' && typeof sb === 'number') return sa - sb;
  if (typeof sa === 'number') return -1;
  if (typeof sb === 'number') return 1;
  return compareText(sa, sb);
}

function sortable(value: unknown): number | string {
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

/** Byte order of the UTF-8 encodings, as SQLite's BINARY collation compares text. */
function compareText(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function parse<T>(text: string): T {
  const doc: unknown = JSON.parse(text);
  return doc as T;
}
