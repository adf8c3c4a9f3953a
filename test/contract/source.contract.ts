import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Parser } from 'tar';
import { PermanentError } from '../../shared/core/errors.ts';
import type { Repo } from '../../shared/core/model/types.ts';
import type { BranchChanges, Source } from '../../shared/ports/source.ts';

/** What the suite needs from an adapter's world: the source under test and a way to make history in its repo. */
export interface SourceHarness {
  source: Source;
  /** A repo that exists and has no commits yet. */
  repo: Repo;
  /**
   * Makes a new commit on top of `branch` (its first commit when the branch is new) whose tree is the parent's
   * with `files` (path -> contents, null to delete the path) written over it; returns the commit's hash.
   */
  commit(branch: string, files: Record<string, string | null>, message: string): Promise<string>;
  /**
   * Makes a commit on top of `parent` that only `ref` (such as `refs/pull/1/head`) points at, no branch, as a pull
   * request's head is; its tree is the parent's with `files` written over it. Returns the commit's hash.
   */
  commitOnRef(ref: string, parent: string, files: Record<string, string>, message: string): Promise<string>;
  /** Rewrites history: points `branch` at `to`, an older commit, as a force push would. */
  resetBranch(branch: string, to: string): Promise<void>;
  cleanup(): Promise<void>;
}

const UNKNOWN_COMMIT = 'c0ffee'.repeat(6) + 'c0ff';

/** Every Source must pass this suite unchanged. `make` gives a fresh harness with an empty repo for each test. */
export function sourceContract(adapterName: string, make: () => Promise<SourceHarness>): void {
  describe(`Source contract: ${adapterName}`, { timeout: 300_000 }, () => {
    let h: SourceHarness;
    beforeEach(async () => {
      h = await make();
    });
    afterEach(async () => {
      await h.cleanup();
    });

    /** Commits one new file per commit on `main`; returns the hashes, oldest first. */
    async function commitMany(prefix: string, count: number): Promise<string[]> {
      const hashes: string[] = [];
      for (let i = 1; i <= count; i++) hashes.push(await h.commit('main', { [`${prefix}-${i}.txt`]: `${prefix} ${i}\n` }, `${prefix} ${i}`));
      return hashes;
    }
    const poll = (previousHead: string | undefined, limit: number, branch = 'main'): Promise<BranchChanges> =>
      h.source.changes(h.repo, branch, previousHead, limit);

    it('first poll returns the last `limit` commits, oldest first, with every field filled', async () => {
      const hashes = await commitMany('linear', 5);
      const changes = await poll(undefined, 3);
      assert.equal(changes.head, hashes[4]);
      assert.deepEqual(changes.commits.map((c) => c.hash), hashes.slice(2));
      assert.equal(changes.forced, false);
      assert.equal(changes.skipped, 0, 'older history on a first poll is not new work, so not skipped');
      assert.deepEqual(changes.commits.map((c) => c.subject), ['linear 3', 'linear 4', 'linear 5']);
      assert.deepEqual(changes.commits.map((c) => c.parents), [[hashes[1]], [hashes[2]], [hashes[3]]]);
      let previousTime = 0;
      for (const commit of changes.commits) {
        assert.equal(typeof commit.author, 'string');
        assert.ok(commit.author.trim().length > 0, `author of ${commit.hash} is filled`);
        assert.ok(Number.isSafeInteger(commit.committedAt) && commit.committedAt > 0, `committedAt ${commit.committedAt} is ms since the epoch`);
        assert.ok(commit.committedAt >= previousTime, 'commits made one after another have non-decreasing times');
        previousTime = commit.committedAt;
      }

      const all = await poll(undefined, 100);
      assert.deepEqual(all.commits.map((c) => c.hash), hashes);
      assert.deepEqual(all.commits[0]?.parents, [], 'the root commit has no parents');
      assert.equal(all.skipped, 0);
    });

    it('names each commit\'s tree: commits with the same files share it, whatever their history', async () => {
      const first = await h.commit('main', { 'tree.txt': 'one\n' }, 'tree one');
      const second = await h.commit('main', { 'tree.txt': 'two\n' }, 'tree two');
      const back = await h.commit('main', { 'tree.txt': 'one\n' }, 'tree one again');
      const changes = await poll(undefined, 100);
      const treeOf = (hash: string) => changes.commits.find((c) => c.hash === hash)?.tree;
      assert.match(treeOf(first) ?? '', /^[0-9a-f]{40}$/);
      assert.equal(treeOf(back), treeOf(first));
      assert.notEqual(treeOf(second), treeOf(first));
    });

    it('an incremental poll returns only the new commits, oldest first, parents before children', async () => {
      const [base] = await commitMany('base', 1);
      assert.ok(base);
      const initial = await poll(undefined, 10);
      assert.equal(initial.head, base);
      assert.deepEqual(initial.commits.map((c) => c.hash), [base]);

      const added = await commitMany('more', 3);
      const next = await poll(initial.head, 10);
      assert.equal(next.head, added[2]);
      assert.deepEqual(next.commits.map((c) => c.hash), added);
      assert.deepEqual(next.commits.map((c) => c.subject), ['more 1', 'more 2', 'more 3']);
      assert.deepEqual(next.commits.map((c) => c.parents), [[base], [added[0]], [added[1]]]);
      assert.equal(next.forced, false);
      assert.equal(next.skipped, 0);
    });

    it('no change gives no commits, the same head, and forced false', async () => {
      await commitMany('c', 2);
      const first = await poll(undefined, 10);
      for (let i = 0; i < 2; i++) {
        assert.deepEqual(await poll(first.head, 10), { head: first.head, commits: [], forced: false, skipped: 0 });
      }
    });

    it('more new commits than the limit keeps the newest and counts the rest as skipped', async () => {
      await commitMany('base', 1);
      const before = await poll(undefined, 10);
      const added = await commitMany('burst', 5);

      const changes = await poll(before.head, 2);
      assert.equal(changes.head, added[4]);
      assert.deepEqual(changes.commits.map((c) => c.hash), added.slice(3));
      assert.equal(changes.skipped, 3);
      assert.equal(changes.forced, false);

      const exact = await poll(before.head, 5);
      assert.deepEqual(exact.commits.map((c) => c.hash), added);
      assert.equal(exact.skipped, 0);

      const none = await poll(before.head, 0);
      assert.equal(none.head, added[4]);
      assert.deepEqual(none.commits, []);
      assert.equal(none.skipped, 5);
    });

    it('rewritten history is reported as forced, with the commits new since the rewrite', async () => {
      const old = await commitMany('old', 3);
      const before = await poll(undefined, 10);
      assert.equal(before.head, old[2]);

      await h.resetBranch('main', old[0] ?? '');
      const rewritten = await commitMany('new', 2);
      const changes = await poll(before.head, 10);
      assert.equal(changes.head, rewritten[1]);
      assert.equal(changes.forced, true);
      assert.deepEqual(changes.commits.map((c) => c.hash), rewritten);
      assert.deepEqual(changes.commits[0]?.parents, [old[0]]);
      assert.equal(changes.skipped, 0);
    });

    it('a branch moved back to an older commit is forced, with nothing new', async () => {
      const old = await commitMany('old', 3);
      const before = await poll(undefined, 10);
      await h.resetBranch('main', old[1] ?? '');
      const changes = await poll(before.head, 10);
      assert.deepEqual(changes, { head: old[1], commits: [], forced: true, skipped: 0 });
    });

    it('each branch is polled on its own', async () => {
      const main = await commitMany('main', 2);
      const release = await h.commit('release', { 'release.txt': 'r\n' }, 'release 1');
      const releaseChanges = await poll(undefined, 10, 'release');
      assert.equal(releaseChanges.head, release);
      assert.deepEqual(releaseChanges.commits.map((c) => c.hash), [release]);
      assert.deepEqual((await poll(undefined, 10)).commits.map((c) => c.hash), main);
    });

    it('a branch that does not exist rejects with an Error naming it', async () => {
      await commitMany('c', 1);
      await assert.rejects(poll(undefined, 10, 'no-such-branch'), (error: unknown) => {
        assert.ok(error instanceof Error, `rejects with an Error, not ${String(error)}`);
        assert.ok(error.message.includes('no-such-branch'), `message names the branch: ${error.message}`);
        return true;
      });
    });

    it('archive gives the gzipped tarball of exactly the commit\'s files, for old commits too', async () => {
      const first = await h.commit('main', { 'README.md': '# hello\n', 'src/main.go': 'package main\n', 'empty.txt': '' }, 'first');
      const second = await h.commit('main', { 'src/main.go': 'package main\n\nfunc main() {}\n', 'docs/ünïcode.txt': 'héllo wörld\n' }, 'second');
      // Not polled first: archive stands on its own.
      const headTarball = await h.source.archive(h.repo, second);
      assert.ok(headTarball instanceof Uint8Array);
      assert.deepEqual([...headTarball.subarray(0, 2)], [0x1f, 0x8b], 'gzip magic');
      assert.deepEqual(await readTarball(headTarball), {
        'README.md': '# hello\n',
        'docs/ünïcode.txt': 'héllo wörld\n',
        'empty.txt': '',
        'src/main.go': 'package main\n\nfunc main() {}\n',
      });
      assert.deepEqual(await readTarball(await h.source.archive(h.repo, first)), {
        'README.md': '# hello\n',
        'empty.txt': '',
        'src/main.go': 'package main\n',
      });
    });

    it('archive of an unknown commit rejects', async () => {
      await commitMany('c', 1);
      await assert.rejects(h.source.archive(h.repo, UNKNOWN_COMMIT), Error);
    });

    it('fetchCommit gives a branch commit the same facts as a poll does', async () => {
      const hashes = await commitMany('facts', 2);
      const polled = await poll(undefined, 10);
      assert.deepEqual(await h.source.fetchCommit(h.repo, hashes[1] ?? ''), polled.commits[1]);
      assert.deepEqual(await h.source.fetchCommit(h.repo, hashes[0] ?? '', 'main'), polled.commits[0]);
    });

    it('fetchCommit finds a commit only a non-branch ref points at, and archive then has it', async () => {
      const [base] = await commitMany('base', 1);
      assert.ok(base);
      await poll(undefined, 10);
      const head = await h.commitOnRef('refs/pull/1/head', base, { 'pr.txt': 'from a pull request\n' }, 'pull request change');
      const info = await h.source.fetchCommit(h.repo, head, 'refs/pull/1/head');
      assert.equal(info.hash, head);
      assert.deepEqual(info.parents, [base]);
      assert.equal(info.subject, 'pull request change');
      assert.match(info.tree, /^[0-9a-f]{40}$/);
      assert.deepEqual(await readTarball(await h.source.archive(h.repo, head)), { 'base-1.txt': 'base 1\n', 'pr.txt': 'from a pull request\n' });
      assert.equal((await poll(base, 10)).head, base, 'the ref is no branch: main did not move');
    });

    it('fetchCommit of an unknown commit rejects with PermanentError', async () => {
      await commitMany('c', 1);
      await assert.rejects(h.source.fetchCommit(h.repo, UNKNOWN_COMMIT), PermanentError);
      await assert.rejects(h.source.fetchCommit(h.repo, UNKNOWN_COMMIT, 'refs/pull/9/head'), PermanentError);
    });

    it('changedFiles lists the paths added, modified and deleted between two commits, sorted, once each', async () => {
      const base = await h.commit('main', { 'keep.txt': 'keep\n', 'zeta.txt': 'z\n', 'gone.txt': 'bye\n', 'flip.txt': 'one\n' }, 'base');
      await h.commit('main', { 'zeta.txt': 'z2\n', 'flip.txt': 'two\n', 'new/added.txt': 'hi\n' }, 'change');
      const head = await h.commit('main', { 'gone.txt': null, 'flip.txt': 'one\n', 'zeta.txt': 'z3\n' }, 'delete and revert');
      assert.deepEqual(await h.source.changedFiles(h.repo, base, head), ['gone.txt', 'new/added.txt', 'zeta.txt'], 'flip.txt changed and came back: no difference');
      assert.deepEqual(await h.source.changedFiles(h.repo, head, head), []);
    });

    it('changedFiles of an unknown commit rejects with PermanentError', async () => {
      const [known] = await commitMany('c', 1);
      assert.ok(known);
      await assert.rejects(h.source.changedFiles(h.repo, known, UNKNOWN_COMMIT), PermanentError);
      await assert.rejects(h.source.changedFiles(h.repo, UNKNOWN_COMMIT, known), PermanentError);
    });
  });
}

/**
 * The regular files of a .tar.gz, path -> contents, sorted by path. Fails on anything but files and directories,
 * on a path that appears twice, and on a malformed archive.
 */
async function readTarball(bytes: Uint8Array): Promise<Record<string, string>> {
  const files = new Map<string, string>();
  const oddities: string[] = [];
  const pending: Promise<void>[] = [];
  // gunzipSync first so a tarball that is not gzip fails here, not by tar's own format sniffing.
  const plain = gunzipSync(bytes);
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry) => {
        if (entry.type === 'Directory') {
          entry.resume();
          return;
        }
        if (entry.type !== 'File' || files.has(entry.path)) oddities.push(`${entry.type} ${entry.path}`);
        pending.push(entry.concat().then((data) => void files.set(entry.path, data.toString('utf8'))));
      },
    });
    parser.on('error', reject);
    parser.on('end', () => resolve());
    parser.end(plain);
  });
  await Promise.all(pending);
  assert.deepEqual(oddities, [], 'only regular files and directories, each once');
  return Object.fromEntries([...files].sort(([a], [b]) => (a < b ? -1 : 1)));
}
