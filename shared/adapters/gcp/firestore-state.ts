import type {
  CollectionReference,
  DocumentData,
  DocumentSnapshot,
  Firestore,
  Query as FirestoreQuery,
  Transaction as FirestoreTransaction,
} from '@google-cloud/firestore';
import { PermanentError } from '../../core/errors.ts';
import type { Collection, Query, Scalar, StateStore, Transaction } from '../../ports/state.ts';
import { checkDocumentId, createLock, runBufferedTransaction, type BufferedWrite } from '../buffered-transaction.ts';
import { checkCollectionName, checkIndexedField, checkQuery } from '../query-checks.ts';
import { fromGrpcError } from './grpc-error.ts';

/** Firestore's limit on the disjunctions of one query (the product of its `in`s). */
const MAX_DISJUNCTIONS = 30;
/**
 * Attempts of one transaction before its contention error is the caller's (a RetryableError). The client's default
 * is 5. Each retry first waits the client's backoff (1 s, then 1.5x up to 60 s, jittered), so a transaction that
 * keeps losing to other processes takes minutes before it gives up; within one process, retries take turns (below).
 */
const DEFAULT_MAX_ATTEMPTS = 10;
/** The field that holds the document itself, as JSON text. */
const DOCUMENT_FIELD = 'json';

export interface FirestoreStateOptions {
  firestore: Firestore;
  /** Put before every collection name (`hermetic-` gives `hermetic-builds`), so deployments can share a database. */
  prefix?: string;
  /** Attempts of a transaction that keeps meeting contention (default 10). */
  maxAttempts?: number;
}

/**
 * A state store in Firestore. Each document is stored as its JSON text in the field `json`, beside a copy of each of
 * its collection's indexed fields that holds a string, number or boolean (what queries filter and order on): the
 * text keeps JSON's meaning exactly (nested arrays, any key, no Firestore types), and only the indexed fields cost
 * index entries. Transactions are Firestore transactions: reads come first, writes are buffered and handed to
 * Firestore when the function returns, and the client runs the function again on contention. A plain read waits for
 * this store's transactions that have written to its collection, so within one process a read sees a transaction's
 * writes all together; across processes Firestore's commits are atomic by themselves. Calling the store (not `tx`)
 * on such a collection from inside a transaction's function therefore waits forever. A transaction that met
 * contention runs its later attempts holding this store's retry turn, one retrying transaction at a time, so writers
 * in one process that keep colliding on a document queue instead of aborting each other again (50 concurrent
 * increments of one counter: about 2 attempts each, not 4 to 10). `close()` terminates the client.
 * Failures from Firestore reject as RetryableError or PermanentError (see grpc-error.ts); a bad query, document or
 * ID rejects with an Error that says what is wrong.
 */
export function createFirestoreState(options: FirestoreStateOptions): StateStore {
  const { firestore } = options;
  const prefix = collectionPrefix(options.prefix);
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) {
    throw new PermanentError(`maxAttempts must be a positive integer, got ${maxAttempts}`);
  }

  let closing: Promise<void> | undefined;
  const assertOpen = (): void => {
    if (closing !== undefined) throw new Error('state store is closed');
  };

  // Transactions running now, with the collections they have buffered writes to so far.
  const writers = new Set<{ collections: Set<string>; settled: Promise<unknown> }>();
  const writersSettled = async (collection: Collection<unknown>): Promise<void> => {
    const waits = [...writers].filter((w) => w.collections.has(collection.name)).map((w) => w.settled);
    if (waits.length > 0) await Promise.all(waits);
  };

  // One retrying transaction at a time: a turn is held from a transaction's second attempt until it settles.
  const retryTurn = createLock();
  const takeRetryTurn = (): Promise<() => void> =>
    new Promise((taken) => {
      void retryTurn(() => new Promise<void>((release) => taken(release)));
    });

  const ref = (collection: Collection<unknown>): CollectionReference =>
    firestore.collection(`${prefix}${collection.name}`);

  return {
    async get<T>(collection: Collection<T>, id: string): Promise<T | undefined> {
      assertOpen();
      checkId(collection, id);
      await writersSettled(collection);
      let snapshot: DocumentSnapshot;
      try {
        snapshot = await ref(collection).doc(id).get();
      } catch (error) {
        throw fromGrpcError(`get ${collection.name}/${id} from Firestore`, error);
      }
      return parseDocument<T>(snapshot);
    },

    async query<T>(collection: Collection<T>, query: Query = {}): Promise<T[]> {
      assertOpen();
      const plan = planQuery(collection, query);
      await writersSettled(collection);
      let q: FirestoreQuery = ref(collection);
      for (const [field, values] of plan.server) {
        q = values.length === 1 ? q.where(field, '==', values[0]) : q.where(field, 'in', values);
      }
      if (query.orderBy !== undefined) q = q.orderBy(query.orderBy.field, query.orderBy.direction);
      if (query.limit !== undefined && plan.client.length === 0) q = q.limit(query.limit);
      let docs: T[];
      try {
        docs = (await q.get()).docs.map((snapshot) => parseDocument<T>(snapshot) as T);
      } catch (error) {
        throw fromGrpcError(`query ${collection.name} in Firestore`, error);
      }
      if (plan.client.length === 0) return docs;
      // The `in`s Firestore could not take in one query, applied here with JSON's equality (1 is 1.0, not '1').
      const matching = docs.filter((doc) =>
        plan.client.every(([field, values]) => values.includes((doc as Record<string, unknown>)[field] as Scalar)),
      );
      return query.limit === undefined ? matching : matching.slice(0, query.limit);
    },

    async transaction<R>(fn: (tx: Transaction) => Promise<R>): Promise<R> {
      assertOpen();
      const writer = { collections: new Set<string>(), settled: Promise.resolve() as Promise<unknown> };
      // What fn threw is the caller's own and passes through as it is; what Firestore threw is mapped.
      const fromFirestore = new WeakSet<object>();
      const fromFn = new WeakSet<object>();
      let attempts = 0;
      let releaseTurn: (() => void) | undefined;
      const attempt = async (ftx: FirestoreTransaction): Promise<R> => {
        attempts += 1;
        if (attempts > 1 && releaseTurn === undefined) releaseTurn = await takeRetryTurn();
        const written = new Map<string, Collection<unknown>>();
        const read = async <T>(collection: Collection<T>, id: string): Promise<T | undefined> => {
          checkId(collection, id);
          try {
            return parseDocument<T>(await ftx.get(ref(collection).doc(id)));
          } catch (error) {
            // Rethrown as it is: the client reads its code to decide whether to run fn again.
            if (typeof error === 'object' && error !== null) fromFirestore.add(error);
            throw error;
          }
        };
        const checkWrite = (collection: Collection<unknown>, id: string): void => {
          checkId(collection, id);
          written.set(collection.name, collection);
          writer.collections.add(collection.name);
        };
        let outcome: { result: R; writes: BufferedWrite[] };
        try {
          outcome = await runBufferedTransaction(fn, { read, checkId: checkWrite });
        } catch (error) {
          if (typeof error === 'object' && error !== null && !fromFirestore.has(error)) fromFn.add(error);
          throw error;
        }
        for (const write of outcome.writes) {
          const collection = written.get(write.collection);
          if (collection === undefined) throw new Error(`no collection ${write.collection} for a buffered write`);
          const doc = ref(collection).doc(write.id);
          if (write.data === undefined) ftx.delete(doc);
          else ftx.set(doc, storedDocument(collection, write.data));
        }
        return outcome.result;
      };
      const running = firestore.runTransaction(attempt, { maxAttempts });
      writer.settled = running.then(
        () => undefined,
        () => undefined,
      );
      writers.add(writer);
      try {
        return await running;
      } catch (error) {
        if (typeof error !== 'object' || error === null || fromFn.has(error)) throw error;
        throw fromGrpcError('Firestore transaction', error);
      } finally {
        writers.delete(writer);
        releaseTurn?.();
      }
    },

    close(): Promise<void> {
      closing ??= firestore.terminate();
      return closing;
    },
  };
}

/** What `query` sends to Firestore, and the `in`s it applies itself (past Firestore's 30 disjunctions). */
interface QueryPlan {
  server: [string, Scalar[]][];
  client: [string, Scalar[]][];
}

function planQuery(collection: Collection<unknown>, query: Query): QueryPlan {
  checkCollection(collection);
  const filters: [string, Scalar[]][] = [];
  for (const [field, values] of checkQuery(collection, query)) {
    // Without repeats, which count against Firestore's limits (a Set keeps 1 and '1' apart, as JSON does).
    filters.push([field, [...new Set(values)]]);
  }
  // Firestore takes at most 30 disjunctions (the product of the `in` sizes); the smaller `in`s go to it first.
  const plan: QueryPlan = { server: [], client: [] };
  let disjunctions = 1;
  for (const filter of [...filters].sort((a, b) => a[1].length - b[1].length)) {
    if (disjunctions * filter[1].length <= MAX_DISJUNCTIONS) {
      disjunctions *= filter[1].length;
      plan.server.push(filter);
    } else {
      plan.client.push(filter);
    }
  }
  return plan;
}

/** The Firestore document for a document's JSON text: the text, and the indexed fields that hold scalars. */
function storedDocument(collection: Collection<unknown>, text: string): DocumentData {
  const doc = JSON.parse(text) as Record<string, unknown>;
  const stored: DocumentData = { [DOCUMENT_FIELD]: text };
  for (const field of collection.indexed) {
    const value = doc[field];
    // Like the SQLite store, a null or missing field is left out of orderBy; objects are not compared.
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') stored[field] = value;
  }
  return stored;
}

function parseDocument<T>(snapshot: DocumentSnapshot): T | undefined {
  if (!snapshot.exists) return undefined;
  const text: unknown = snapshot.get(DOCUMENT_FIELD);
  if (typeof text !== 'string') {
    throw new PermanentError(`Firestore document ${snapshot.ref.path} has no ${DOCUMENT_FIELD} text: not written by this store`);
  }
  return JSON.parse(text) as T;
}

/** The collection name prefix (default none); throws PermanentError for one Firestore would misread. Shared with the dead letters. */
export function collectionPrefix(prefix = ''): string {
  if (!/^[A-Za-z0-9_-]*$/.test(prefix)) throw new PermanentError(`invalid Firestore collection prefix ${JSON.stringify(prefix)}`);
  return prefix;
}

function checkCollection(collection: Collection<unknown>): void {
  checkCollectionName(collection.name);
  // Firestore reserves __names__; `json` holds the document itself.
  for (const field of collection.indexed) checkIndexedField(collection.name, field, (name) => /^__.*__$/.test(name) || name === DOCUMENT_FIELD);
}

function checkId(collection: Collection<unknown>, id: string): void {
  checkCollection(collection);
  checkDocumentId(collection, id);
}
