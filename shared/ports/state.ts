import type { BranchState, Build, Commit, LearnedDuration, Task, TrustRecord, TryRun, Verdict } from '../core/model/types.ts';

/**
 * The state port: collections of JSON documents with deterministic IDs, and transactions in the shape Firestore
 * gives (reads first, writes buffered and applied all together at commit, the whole function retried on
 * contention). Every state change in the pipeline is a compare-and-set inside one of these.
 */

/** A typed collection name. `T` only types the documents; nothing is checked at run time. */
export interface Collection<T> {
  readonly name: string;
  /** Fields the adapters index, for `query`'s `where` and `orderBy`. */
  readonly indexed: readonly string[];
  readonly _doc?: T;
}

function collection<T>(name: string, indexed: readonly string[]): Collection<T> {
  return { name, indexed };
}

export const collections = {
  branches: collection<BranchState>('branches', ['repo']),
  commits: collection<Commit>('commits', ['repo', 'seq']),
  builds: collection<Build>('builds', ['repo', 'commit', 'status', 'seq']),
  tasks: collection<Task>('tasks', ['buildId', 'status']),
  durations: collection<LearnedDuration>('durations', ['builder']),
  trybots: collection<TryRun>('trybots', ['repo', 'commit', 'status', 'requestedBy', 'createdAt']),
  verdicts: collection<Verdict>('verdicts', []),
  trust: collection<TrustRecord>('trust', []),
  /** Per untrusted requester, the requests waiting for approval: the flood limit, kept exact in transactions. */
  waiting: collection<{ login: string; tryIds: string[] }>('waiting', []),
  /** Conditional-request validators and the responses they stand for (GitHub's ETags). */
  etags: collection<{ key: string; etag: string; value: unknown; storedAt: number }>('etags', []),
} as const;

export type Scalar = string | number | boolean;

export interface Query {
  /** Equality on each field, or membership in a list (at most 30 values, as Firestore allows). */
  where?: Record<string, Scalar | { in: readonly Scalar[] }>;
  orderBy?: { field: string; direction: 'asc' | 'desc' };
  limit?: number;
}

export interface Transaction {
  /** Reads a document as of the transaction's snapshot. All reads come before any write. */
  get<T>(collection: Collection<T>, id: string): Promise<T | undefined>;
  /** Writes a whole document at commit. */
  set<T>(collection: Collection<T>, id: string, doc: T): void;
  delete<T>(collection: Collection<T>, id: string): void;
}

export interface StateStore {
  /** Reads one document; undefined when there is none. */
  get<T>(collection: Collection<T>, id: string): Promise<T | undefined>;
  /** Documents matching the query; fields in `where` and `orderBy` must be indexed. */
  query<T>(collection: Collection<T>, query?: Query): Promise<T[]>;
  /**
   * Runs `fn` atomically and returns what it returned. `fn` may run more than once (on contention), so it must
   * do nothing but read and write through `tx`. Its writes land all or none; if it throws, none do.
   */
  transaction<R>(fn: (tx: Transaction) => Promise<R>): Promise<R>;
  close(): Promise<void>;
}
