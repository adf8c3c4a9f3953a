import type { Repo } from '../core/model/types.ts';

/** The source port: what is new on a branch, and a commit's tree as a tarball for workers. */

export interface CommitInfo {
  hash: string;
  /** The commit's tree: equal for commits with the same files, whatever their history. */
  tree: string;
  parents: string[];
  author: string;
  subject: string;
  /** Committer time, ms since the epoch. */
  committedAt: number;
}

export interface BranchChanges {
  /** The branch head now. */
  head: string;
  /** Commits reachable from head and not from the previous head, oldest first (parents before children). */
  commits: CommitInfo[];
  /** True when the previous head is no longer an ancestor of head (history was rewritten). */
  forced: boolean;
  /** New commits left out because of the limit (the oldest ones). */
  skipped: number;
}

export interface Source {
  /**
   * What is new on `branch` since `previousHead` (undefined on the first poll: the last `limit` commits). Throws
   * when the branch does not exist or the repo cannot be reached.
   */
  changes(repo: Repo, branch: string, previousHead: string | undefined, limit: number): Promise<BranchChanges>;
  /** The commit's tree as a gzipped tarball, paths relative to the tree's root (no leading directory). */
  archive(repo: Repo, commit: string): Promise<Uint8Array>;
  /**
   * One commit's facts. A commit the source does not have yet is fetched from `ref` (a branch, or a pull request's
   * `refs/pull/N/head`), so a later `archive` finds it. Throws PermanentError when there is no such commit.
   */
  fetchCommit(repo: Repo, commit: string, ref?: string): Promise<CommitInfo>;
  /** Paths whose contents differ between two commits, sorted. Throws PermanentError for an unknown commit. */
  changedFiles(repo: Repo, base: string, head: string): Promise<string[]>;
}
