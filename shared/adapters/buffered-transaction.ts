import type { Collection, Transaction } from '../ports/state.ts';

/**
 * The transaction bookkeeping shared by the state stores: "read first, buffer the writes, apply them all at once".
 * The stores that serialize every operation behind one lock (the SQLite adapter and the in-memory fake) read plainly,
 * since with nothing else running a plain read is a snapshot read; the Firestore adapter reads through its
 * Firestore transaction and applies the writes to it. Each store keeps how it reads and how it applies.
 */

/** One buffered write to apply at commit. */
export interface BufferedWrite {
  readonly collection: string;
  readonly id: string;
  /** The document as JSON text; undefined: delete. */
  readonly data: string | undefined;
}

export interface BufferedTransactionDeps {
  /** Reads one document as of the transaction's snapshot (under the caller's lock, or in a store transaction); checks `id` itself. */
  read<T>(collection: Collection<T>, id: string): T | undefined | Promise<T | undefined>;
  /** Throws on a document ID (or collection) the store refuses; run at every `set` and `delete`. */
  checkId(collection: Collection<unknown>, id: string): void;
}

/**
 * Runs `fn` against a transaction that reads through `deps.read` and buffers its writes (the last write to a
 * document wins), and resolves to what `fn` returned and the writes, for the caller to apply atomically. Call it
 * holding the store's lock. A read after a write, a `set` of a non-object or non-JSON document and a refused ID
 * throw inside `fn`; any use of `tx` once `fn` has settled throws; if `fn` rejects, this rejects and there are no
 * writes.
 */
export async function runBufferedTransaction<R>(
  fn: (tx: Transaction) => Promise<R>,
  deps: BufferedTransactionDeps,
): Promise<{ result: R; writes: BufferedWrite[] }> {
  const writes = new Map<string, BufferedWrite>();
  let finished = false;
  const assertActive = (): void => {
    if (finished) throw new Error('transaction already finished: use tx only inside its function');
  };
  const tx: Transaction = {
    async get<T>(collection: Collection<T>, id: string): Promise<T | undefined> {
      assertActive();
      if (writes.size > 0) {
        throw new Error(
          `transaction reads must come before writes: get(${collection.name}/${id}) after a set or delete`,
        );
      }
      return deps.read(collection, id);
    },
    set<T>(collection: Collection<T>, id: string, doc: T): void {
      assertActive();
      deps.checkId(collection, id);
      // Serialized now, so a document that is not JSON fails inside fn and the transaction aborts.
      const data = serializeDocument(collection, doc);
      writes.set(`${collection.name}\0${id}`, { collection: collection.name, id, data });
    },
    delete<T>(collection: Collection<T>, id: string): void {
      assertActive();
      deps.checkId(collection, id);
      writes.set(`${collection.name}\0${id}`, { collection: collection.name, id, data: undefined });
    },
  };
  try {
    const result = await fn(tx);
    return { result, writes: [...writes.values()] };
  } finally {
    finished = true;
  }
}

/** Firestore's limit on a document ID's UTF-8 length. */
const MAX_ID_BYTES = 1500;

/** Throws an Error unless `id` follows Firestore's rules for document IDs, so no local store accepts one it would refuse. */
export function checkDocumentId(collection: Collection<unknown>, id: string): void {
  if (
    typeof id !== 'string' ||
    id === '' ||
    id === '.' ||
    id === '..' ||
    id.includes('/') ||
    /^__.*__$/s.test(id) ||
    Buffer.byteLength(id) > MAX_ID_BYTES
  ) {
    throw new Error(`invalid document ID ${JSON.stringify(id)} in ${collection.name}`);
  }
}

/** Runs functions one at a time, in call order; a failure rejects its own caller only. */
export function createLock(): <R>(fn: () => R | Promise<R>) => Promise<R> {
  let tail: Promise<unknown> = Promise.resolve();
  return <R>(fn: () => R | Promise<R>): Promise<R> => {
    const result = tail.then(fn);
    tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  };
}

function serializeDocument(collection: Collection<unknown>, doc: unknown): string {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new Error(`a document in ${collection.name} must be a JSON object`);
  }
  // A toJSON() can turn an object into anything, even undefined, which must not pass for a delete.
  const text = JSON.stringify(doc) as string | undefined;
  if (text === undefined || !text.startsWith('{')) {
    throw new Error(`a document in ${collection.name} must serialize to a JSON object`);
  }
  return text;
}
