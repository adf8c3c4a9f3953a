import { createHash } from 'node:crypto';
import { packTarball } from '../../shared/adapters/tarball.ts';
import { PermanentError } from '../../shared/core/errors.ts';
import type { Repo } from '../../shared/core/model/types.ts';
import type { BranchChanges, CommitInfo, Source } from '../../shared/ports/source.ts';

/** The in-memory Source, plus the hooks a test uses to make history. */
export interface FakeSource extends Source {
  /**
   * Adds a commit on top of the branch (a root commit when the branch is new) whose tree is the parent's with
   * `files` written over it (a null deletes the path); returns its hash.
   */
  commit(repo: string, branch: string, files: Record<string, string | null>, subject?: string): string;
  /** Adds a commit that changes no file; returns its hash. */
  push(repo: string, branch: string, subject?: string): string;
  /** Points the branch at `to`, a commit of the repo, as a force push would. Throws when `to` is unknown. */
  reset(repo: string, branch: string, to: string): void;
}

interface StoredCommit {
  info: CommitInfo;
  files: ReadonlyMap<string, string>;
}

/**
 * A Source over in-memory linear histories, passing the source contract; for the pipeline's unit tests. Rejects
 * like the git adapter: an Error naming the missing branch or commit.
 */
export function createFakeSource(): FakeSource {
  /** Per repo name: every commit ever made, kept after a reset like git keeps unreachable objects. */
  const commits = new Map<string, Map<string, StoredCommit>>();
  const heads = new Map<string, string>();
  const tarballs = new WeakMap<ReadonlyMap<string, string>, Promise<Uint8Array>>();
  let counter = 0;

  const branchKey = (repo: string, branch: string): string => `${repo}\0${branch}`;
  const commitsOf = (repo: string): Map<string, StoredCommit> => {
    let map = commits.get(repo);
    if (map === undefined) commits.set(repo, (map = new Map()));
    return map;
  };

  /** The history ending at `hash`, oldest first. Every fake commit has at most one parent. */
  function history(repo: string, hash: string): CommitInfo[] {
    const chain: CommitInfo[] = [];
    for (let at: string | undefined = hash; at !== undefined; ) {
      const stored = commitsOf(repo).get(at);
      if (stored === undefined) throw new Error(`fake source: repo "${repo}" lost commit ${at}`);
      chain.push(stored.info);
      at = stored.info.parents[0];
    }
    return chain.reverse();
  }

  function commit(repo: string, branch: string, files: Record<string, string | null>, subject = `commit ${counter + 1}`): string {
    const parent = heads.get(branchKey(repo, branch));
    const parentTree = parent === undefined ? undefined : commitsOf(repo).get(parent)?.files;
    // A commit that changes nothing shares its parent's tree, and with it the cached tarball: the control-plane
    // bench archives hundreds of such commits and should measure the pipeline, not gzip.
    const tree =
      parentTree !== undefined && Object.keys(files).length === 0
        ? parentTree
        : withFiles(parentTree, files);
    counter += 1;
    const hash = counter.toString(16).padStart(40, '0');
    const info: CommitInfo = {
      hash,
      tree: treeHash(tree),
      parents: parent === undefined ? [] : [parent],
      author: 'Fake Author <author@example.com>',
      subject,
      committedAt: counter * 1000,
    };
    commitsOf(repo).set(hash, { info, files: tree });
    heads.set(branchKey(repo, branch), hash);
    return hash;
  }

  return {
    commit,
    push: (repo, branch, subject) => commit(repo, branch, {}, subject),

    reset(repo, branch, to) {
      if (!commitsOf(repo).has(to)) throw new Error(`fake source: repo "${repo}" has no commit ${to}`);
      heads.set(branchKey(repo, branch), to);
    },

    async changes(repo: Repo, branch: string, previousHead: string | undefined, limit: number): Promise<BranchChanges> {
      const head = heads.get(branchKey(repo.name, branch));
      if (head === undefined) throw new Error(`repo "${repo.name}" has no branch "${branch}"`);
      if (previousHead === head) return { head, commits: [], forced: false, skipped: 0 };
      const chain = history(repo.name, head);
      const newest = (list: CommitInfo[]): CommitInfo[] => list.slice(Math.max(0, list.length - limit));
      // Like the git adapter: the first poll, or a previous head this repo never had, takes the last `limit`
      // commits and counts no older history as skipped, since none of it is new work.
      if (previousHead === undefined || !commitsOf(repo.name).has(previousHead)) {
        return { head, commits: newest(chain), forced: previousHead !== undefined, skipped: 0 };
      }
      const seen = new Set(history(repo.name, previousHead).map((info) => info.hash));
      const fresh = chain.filter((info) => !seen.has(info.hash));
      const commits = newest(fresh);
      return { head, commits, forced: !chain.some((info) => info.hash === previousHead), skipped: fresh.length - commits.length };
    },

    async archive(repo: Repo, hash: string): Promise<Uint8Array> {
      const stored = commitsOf(repo.name).get(hash);
      if (stored === undefined) throw new Error(`repo "${repo.name}" has no commit ${hash}`);
      let tarball = tarballs.get(stored.files);
      if (tarball === undefined) tarballs.set(stored.files, (tarball = gzippedTarball(stored.files)));
      // A copy, so a caller that writes into its bytes cannot change what the next caller gets.
      return new Uint8Array(await tarball);
    },

    async fetchCommit(repo: Repo, hash: string): Promise<CommitInfo> {
      const stored = commitsOf(repo.name).get(hash);
      if (stored === undefined) throw new PermanentError(`repo "${repo.name}" has no commit ${hash}`);
      return stored.info;
    },

    async changedFiles(repo: Repo, base: string, head: string): Promise<string[]> {
      const [from, to] = [base, head].map((hash) => {
        const stored = commitsOf(repo.name).get(hash);
        if (stored === undefined) throw new PermanentError(`repo "${repo.name}" has no commit ${hash}`);
        return stored.files;
      }) as [ReadonlyMap<string, string>, ReadonlyMap<string, string>];
      const paths = new Set([...from.keys(), ...to.keys()]);
      return [...paths].filter((path) => from.get(path) !== to.get(path)).sort();
    },
  };
}

/** The parent's files with `files` written over them, a null deleting its path. */
function withFiles(parent: ReadonlyMap<string, string> | undefined, files: Record<string, string | null>): Map<string, string> {
  const tree = new Map(parent);
  for (const [path, contents] of Object.entries(files)) {
    if (contents === null) tree.delete(path);
    else tree.set(path, contents);
  }
  return tree;
}

/** Trees are shared between commits, so entries carry no commit's time. */
const FIXED_MTIME = new Date(0);

/** A real .tar.gz of the files. */
function gzippedTarball(files: ReadonlyMap<string, string>): Promise<Uint8Array> {
  const sorted = [...files].sort(([a], [b]) => (a < b ? -1 : 1));
  return packTarball(sorted.map(([path, contents]) => ({ header: { path, type: 'File', mode: 0o644, mtime: FIXED_MTIME }, data: Buffer.from(contents, 'utf8') })));
}

/** A tree hash of the fake's files: equal files, equal hash, as git's tree hashes are. */
function treeHash(files: ReadonlyMap<string, string>): string {
  return createHash('sha1').update(JSON.stringify([...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))).digest('hex');
}
