import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test, type TestContext } from 'node:test';
import * as tar from 'tar';
import { createGitSource } from '../../shared/adapters/local/git-source.ts';
import { PermanentError, RetryableError } from '../../shared/core/errors.ts';
import type { Repo } from '../../shared/core/model/types.ts';
import type { Fields, Logger } from '../../shared/ports/log.ts';
import type { Source } from '../../shared/ports/source.ts';
import { createTestRepo, type TestRepo } from '../helpers/git-repo.ts';

interface Fixture {
  root: string;
  upstream: TestRepo;
  source: Source;
  repo: Repo;
  warnings: { event: string; fields: Fields | undefined }[];
}

async function fixture(t: TestContext): Promise<Fixture> {
  const root = await mkdtemp(join(tmpdir(), 'hermetic-git-source-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const upstream = await createTestRepo(join(root, 'upstream'));
  const warnings: Fixture['warnings'] = [];
  const logger: Logger = { info() {}, warn: (event, fields) => warnings.push({ event, fields }), error() {} };
  const source = createGitSource({ cacheDir: join(root, 'cache'), timeoutMs: 30_000, logger });
  return { root, upstream, source, repo: makeRepo('upstream', upstream.path), warnings };
}

function makeRepo(name: string, url: string): Repo {
  return { name, url, branches: ['main'], builders: ['default'], backfill: 10 };
}

/** Commits `count` files one by one on the current branch; returns the hashes, oldest first. */
async function commitMany(repo: TestRepo, prefix: string, count: number): Promise<string[]> {
  const hashes: string[] = [];
  for (let i = 1; i <= count; i++) hashes.push(await repo.commit({ [`${prefix}-${i}.txt`]: `${prefix} ${i}\n` }, `${prefix} ${i}`));
  return hashes;
}

async function findPwned(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true });
  const found = entries.filter((entry) => basename(entry) === 'PWNED');
  if (existsSync(join(process.cwd(), 'PWNED'))) found.push(join(process.cwd(), 'PWNED'));
  return found;
}

test('first poll returns the last `limit` commits oldest first, with full commit info', async (t) => {
  const { upstream, source, repo } = await fixture(t);
  const hashes = await commitMany(upstream, 'linear', 5);

  const changes = await source.changes(repo, 'main', undefined, 3);
  assert.equal(changes.head, hashes[4]);
  assert.deepEqual(changes.commits.map((c) => c.hash), hashes.slice(2));
  assert.equal(changes.forced, false);
  assert.equal(changes.skipped, 0);

  const third = changes.commits[0];
  assert.ok(third);
  assert.deepEqual(third.parents, [hashes[1]]);
  assert.equal(third.author, 'Test Author <author@example.com>');
  assert.equal(third.subject, 'linear 3');
  assert.equal(third.committedAt, Number(await upstream.git('log', '-1', '--format=%ct', third.hash)) * 1000);

  const all = await source.changes(repo, 'main', undefined, 100);
  assert.deepEqual(all.commits.map((c) => c.hash), hashes);
  assert.deepEqual(all.commits[0]?.parents, []);
});

test('an incremental poll returns only the new commits, oldest first; no change returns none', async (t) => {
  const { upstream, source, repo } = await fixture(t);
  const [first] = await commitMany(upstream, 'base', 1);
  assert.ok(first);
  const initial = await source.changes(repo, 'main', undefined, 10);
  assert.equal(initial.head, first);

  const added = await commitMany(upstream, 'more', 3);
  const next = await source.changes(repo, 'main', initial.head, 10);
  assert.equal(next.head, added[2]);
  assert.deepEqual(next.commits.map((c) => c.hash), added);
  assert.deepEqual(next.commits.map((c) => c.subject), ['more 1', 'more 2', 'more 3']);
  assert.equal(next.forced, false);
  assert.equal(next.skipped, 0);

  const same = await source.changes(repo, 'main', next.head, 10);
  assert.deepEqual(same, { head: next.head, commits: [], forced: false, skipped: 0 });
});

test('a merged side branch yields the merge and the side commits, parents before children', async (t) => {
  const { upstream, source, repo } = await fixture(t);
  await commitMany(upstream, 'base', 2);
  const before = await source.changes(repo, 'main', undefined, 10);

  await upstream.git('checkout', '--quiet', '-b', 'side', 'HEAD~1');
  const side = await commitMany(upstream, 'side', 2);
  await upstream.git('checkout', '--quiet', 'main');
  const [mainline] = await commitMany(upstream, 'main', 1);
  await upstream.git('merge', '--quiet', '--no-ff', '-m', 'merge side', 'side');
  const merge = await upstream.git('rev-parse', 'HEAD');

  const changes = await source.changes(repo, 'main', before.head, 10);
  assert.equal(changes.head, merge);
  assert.equal(changes.forced, false);
  const order = changes.commits.map((c) => c.hash);
  assert.deepEqual([...order].sort(), [mainline, ...side, merge].sort());
  for (const [index, commit] of changes.commits.entries()) {
    for (const parent of commit.parents) {
      const parentIndex = order.indexOf(parent);
      if (parentIndex !== -1) assert.ok(parentIndex < index, `${parent} must come before its child ${commit.hash}`);
    }
  }
  const last = changes.commits.at(-1);
  assert.equal(last?.hash, merge);
  assert.equal(last?.parents.length, 2);
});

test('a force push is reported as forced, with the new commits', async (t) => {
  const { upstream, source, repo, warnings } = await fixture(t);
  const old = await commitMany(upstream, 'old', 3);
  const before = await source.changes(repo, 'main', undefined, 10);
  assert.equal(before.head, old[2]);

  await upstream.git('reset', '--quiet', '--hard', old[0] ?? '');
  const rewritten = await commitMany(upstream, 'new', 2);
  const changes = await source.changes(repo, 'main', before.head, 10);
  assert.equal(changes.head, rewritten[1]);
  assert.equal(changes.forced, true);
  assert.deepEqual(changes.commits.map((c) => c.hash), rewritten);
  assert.ok(warnings.some((w) => w.event === 'source.history_rewritten'));
});

test('a previous head unknown to the mirror counts as forced and falls back to the first-poll rule', async (t) => {
  const { upstream, source, repo } = await fixture(t);
  const hashes = await commitMany(upstream, 'c', 4);
  const changes = await source.changes(repo, 'main', 'deadbeef'.repeat(5), 2);
  assert.equal(changes.forced, true);
  assert.equal(changes.skipped, 0);
  assert.deepEqual(changes.commits.map((c) => c.hash), hashes.slice(2));
});

test('more new commits than the limit keeps the newest and counts the rest as skipped', async (t) => {
  const { upstream, source, repo, warnings } = await fixture(t);
  await commitMany(upstream, 'base', 1);
  const before = await source.changes(repo, 'main', undefined, 10);
  const added = await commitMany(upstream, 'burst', 5);

  const changes = await source.changes(repo, 'main', before.head, 2);
  assert.deepEqual(changes.commits.map((c) => c.hash), added.slice(3));
  assert.equal(changes.skipped, 3);
  assert.equal(changes.forced, false);
  const warning = warnings.find((w) => w.event === 'source.commits_skipped');
  assert.equal(warning?.fields?.['skipped'], 3);

  const exact = await source.changes(repo, 'main', before.head, 5);
  assert.equal(exact.commits.length, 5);
  assert.equal(exact.skipped, 0);
  const none = await source.changes(repo, 'main', before.head, 0);
  assert.deepEqual(none.commits, []);
  assert.equal(none.skipped, 5);
});

test('a missing branch is an Error naming the repo and the branch, also after the remote deletes it', async (t) => {
  const { upstream, source, repo } = await fixture(t);
  await commitMany(upstream, 'c', 1);
  await assert.rejects(source.changes(repo, 'nope', undefined, 10), /repo "upstream".*no branch "nope"/);

  await upstream.git('branch', 'release-1');
  assert.ok((await source.changes(repo, 'release-1', undefined, 10)).head);
  await upstream.git('branch', '-D', 'release-1');
  await assert.rejects(source.changes(repo, 'release-1', undefined, 10), /no branch "release-1"/);
});

test('an unreachable repo is an Error carrying git\'s stderr', async (t) => {
  const { root, source } = await fixture(t);
  const missing = makeRepo('missing', join(root, 'does-not-exist'));
  await assert.rejects(source.changes(missing, 'main', undefined, 10), (error: Error) => {
    assert.match(error.message, /repo "missing".*fetch failed/);
    assert.match(error.message, /does not appear to be a git repository|does-not-exist/);
    return true;
  });
});

test('file:// URLs work like paths, and a changed URL gets its own mirror', async (t) => {
  const { root, upstream, source } = await fixture(t);
  const hashes = await commitMany(upstream, 'c', 2);
  const viaFileUrl = makeRepo('upstream', pathToFileURL(upstream.path).href);
  const changes = await source.changes(viaFileUrl, 'main', undefined, 10);
  assert.deepEqual(changes.commits.map((c) => c.hash), hashes);

  const other = await createTestRepo(join(root, 'other'));
  const [otherHead] = await commitMany(other, 'other', 1);
  const renamed = makeRepo('upstream', other.path);
  assert.equal((await source.changes(renamed, 'main', undefined, 10)).head, otherHead);
  assert.equal((await source.changes(viaFileUrl, 'main', undefined, 10)).head, hashes[1]);
  const mirrors = (await readdir(join(root, 'cache'))).filter((name) => name.endsWith('.git'));
  assert.equal(mirrors.length, 2);
});

test('overlapping polls of one repo are serialized and all succeed', async (t) => {
  const { upstream, source, repo } = await fixture(t);
  await commitMany(upstream, 'c', 1);
  // Many branches moving at once: unserialized fetches into one mirror race for the same ref locks.
  const branches = Array.from({ length: 20 }, (_, i) => `b${i}`);
  for (const branch of branches) await upstream.git('branch', branch);
  await source.changes(repo, 'main', undefined, 10);
  const hashes = await commitMany(upstream, 'n', 2);
  for (const branch of branches) await upstream.git('branch', '--force', branch, 'HEAD');
  const results = await Promise.all(Array.from({ length: 12 }, (_, i) => source.changes(repo, branches[i] ?? 'main', undefined, 2)));
  for (const result of results) assert.deepEqual(result.commits.map((c) => c.hash), hashes);
});

test('a git call past the timeout is a RetryableError', async (t) => {
  const { root, upstream, repo } = await fixture(t);
  await commitMany(upstream, 'c', 1);
  const hasty = createGitSource({ cacheDir: join(root, 'hasty'), timeoutMs: 1 });
  await assert.rejects(hasty.changes(repo, 'main', undefined, 10), (error: Error) => {
    assert.ok(error instanceof RetryableError, `${error.name}: ${error.message}`);
    assert.match(error.message, /timed out after 1 ms/);
    return true;
  });
});

test('hostile branch names, URLs and hashes are refused and run nothing', async (t) => {
  const { root, upstream, source, repo } = await fixture(t);
  await commitMany(upstream, 'c', 1);
  const head = (await source.changes(repo, 'main', undefined, 1)).head;

  for (const branch of ['main;touch PWNED', '$(touch PWNED)', '--upload-pack=touch PWNED', '`touch PWNED`', '-main', '']) {
    await assert.rejects(source.changes(repo, branch, undefined, 10), (error: Error) => {
      assert.ok(error.message.includes(JSON.stringify(branch)), `message names the branch: ${error.message}`);
      return true;
    });
  }
  for (const url of ['--upload-pack=touch PWNED', 'ext::sh -c touch%20PWNED', 'ext::sh -c touch% PWNED', 'fd::0', `${upstream.path}\ntouch PWNED`]) {
    const hostile = makeRepo('hostile', url);
    await assert.rejects(source.changes(hostile, 'main', undefined, 10), Error);
    await assert.rejects(source.archive(hostile, head), Error);
  }
  await assert.rejects(source.changes(makeRepo('hostile', '--upload-pack=touch PWNED'), 'main', undefined, 10), /refusing git URL "--upload-pack=touch PWNED"/);
  await assert.rejects(source.changes(makeRepo('hostile', 'ext::sh -c touch% PWNED'), 'main', undefined, 10), /transport 'ext' not allowed/);
  for (const previous of ['--output=PWNED', 'HEAD', `${head};touch PWNED`]) {
    await assert.rejects(source.changes(repo, 'main', previous, 10), /is not a full commit hash/);
  }
  for (const commit of ['--output=PWNED', '--remote=ext::sh -c touch% PWNED', 'HEAD', head.toUpperCase()]) {
    await assert.rejects(source.archive(repo, commit), /is not a full commit hash/);
  }
  await assert.rejects(source.changes({ ...repo, name: '../escape' }, 'main', undefined, 10), /unsafe repo name/);
  // A trybot's ref, where a pull request's head is fetched from.
  const missing = 'd'.repeat(40);
  for (const ref of ['--upload-pack=touch PWNED', 'refs/pull/1/head;touch PWNED', '$(touch PWNED)', 'refs/pull/1/head\ntouch PWNED', '../../PWNED']) {
    await assert.rejects(source.fetchCommit(repo, missing, ref), (error: unknown) => error instanceof PermanentError && /unsafe ref name/.test(error.message), JSON.stringify(ref));
  }
  for (const hash of ['--output=PWNED', 'HEAD']) await assert.rejects(source.changedFiles(repo, head, hash), /is not a full commit hash/);

  assert.deepEqual(await findPwned(root), []);
});

test('ext:: stays refused even when the user\'s git config allows every protocol', async (t) => {
  const { root, upstream } = await fixture(t);
  await commitMany(upstream, 'c', 1);
  const home = join(root, 'home');
  await mkdir(home);
  await writeFile(join(home, '.gitconfig'), '[protocol]\n\tallow = always\n[protocol "ext"]\n\tallow = always\n');
  const saved = { HOME: process.env['HOME'], XDG_CONFIG_HOME: process.env['XDG_CONFIG_HOME'] };
  process.env['HOME'] = home;
  delete process.env['XDG_CONFIG_HOME'];
  let source: Source;
  try {
    source = createGitSource({ cacheDir: join(root, 'cache'), timeoutMs: 30_000 });
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
  await assert.rejects(source.changes(makeRepo('hostile', 'ext::sh -c touch% PWNED'), 'main', undefined, 10), /not allowed/);
  assert.deepEqual(await findPwned(root), []);
});

test('the PWNED check can fail: git run without the adapter\'s protections does run an ext:: command', async (t) => {
  const { root } = await fixture(t);
  const scratch = join(root, 'scratch');
  await mkdir(scratch);
  await new Promise<void>((resolvePromise) => {
    execFile(
      'git',
      ['-c', 'protocol.ext.allow=always', 'ls-remote', 'ext::sh -c touch% PWNED'],
      { cwd: scratch, env: { PATH: process.env['PATH'] ?? '', HOME: root, GIT_CONFIG_NOSYSTEM: '1' }, timeout: 10_000 },
      // The fake transport speaks no protocol, so git fails after running it; only the side effect matters.
      () => resolvePromise(),
    );
  });
  assert.deepEqual(await findPwned(root), [join('scratch', 'PWNED')]);
});

test('archive round trip keeps file contents and the executable bit', async (t) => {
  const { root, upstream, source, repo } = await fixture(t);
  const commit = await upstream.commit(
    { 'README.md': '# hello\n', 'src/main.go': 'package main\n\nfunc main() {}\n', 'run.sh': '#!/bin/sh\necho hi\n' },
    'add files',
    { executable: ['run.sh'] },
  );
  // Never polled: archive fetches on demand.
  const tarball = await source.archive(repo, commit);
  assert.ok(tarball instanceof Uint8Array);
  assert.deepEqual([...tarball.subarray(0, 2)], [0x1f, 0x8b], 'gzip magic');

  const file = join(root, 'tree.tar.gz');
  const out = join(root, 'extracted');
  await writeFile(file, tarball);
  await mkdir(out);
  await tar.x({ file, cwd: out });
  assert.equal(await readFile(join(out, 'README.md'), 'utf8'), '# hello\n');
  assert.equal(await readFile(join(out, 'src/main.go'), 'utf8'), 'package main\n\nfunc main() {}\n');
  assert.equal(await readFile(join(out, 'run.sh'), 'utf8'), '#!/bin/sh\necho hi\n');
  assert.notEqual((await stat(join(out, 'run.sh'))).mode & 0o111, 0, 'run.sh is executable');
  assert.equal((await stat(join(out, 'README.md'))).mode & 0o111, 0, 'README.md is not executable');

  const again = await source.archive(repo, commit);
  assert.deepEqual(again, tarball, 'archives are byte-for-byte reproducible');
});

test('archive fetches a commit that is on no branch by its hash', async (t) => {
  const { upstream, source, repo } = await fixture(t);
  await commitMany(upstream, 'base', 1);
  await source.changes(repo, 'main', undefined, 1);
  await upstream.git('checkout', '--quiet', '-b', 'pending');
  const pending = await upstream.commit({ 'change.txt': 'pending\n' }, 'pending change');
  await upstream.git('update-ref', 'refs/changes/01/1/1', pending);
  await upstream.git('checkout', '--quiet', 'main');
  await upstream.git('branch', '-D', 'pending');

  const tarball = await source.archive(repo, pending);
  assert.ok(tarball.byteLength > 0);
});

test('archive of a commit that does not exist is an Error naming it', async (t) => {
  const { upstream, source, repo } = await fixture(t);
  await commitMany(upstream, 'c', 1);
  const missing = '0123456789abcdef'.repeat(2) + '01234567';
  await assert.rejects(source.archive(repo, missing), new RegExp(`repo "upstream".*has no commit ${missing}`));
});

test('archive of a hash that names a tree, not a commit, is an Error naming it, even when the mirror has it', async (t) => {
  const { upstream, source, repo } = await fixture(t);
  const [head] = await commitMany(upstream, 'c', 1);
  await source.changes(repo, 'main', undefined, 1);
  const tree = (await upstream.git('rev-parse', `${head}^{tree}`)).trim();
  await assert.rejects(source.archive(repo, tree), new RegExp(`repo "upstream".*has no commit ${tree}`));
});
