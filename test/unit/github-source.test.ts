import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { Parser } from 'tar';
import { createGitHubClient } from '../../shared/adapters/github/client.ts';
import { createGitHubSource } from '../../shared/adapters/github/github-source.ts';
import { createStateEtagCache } from '../../shared/adapters/github/state-etag-cache.ts';
import { PermanentError } from '../../shared/core/errors.ts';
import type { Repo } from '../../shared/core/model/types.ts';
import type { Source } from '../../shared/ports/source.ts';
import { createMemoryState } from '../fakes/memory-state.ts';
import { startGitHubWorld, TEST_TOKEN, type GitHubWorld } from '../helpers/github-world.ts';

const run = promisify(execFile);
const repo: Repo = { name: 'widgets', url: 'https://github.com/acme/widgets.git', github: { owner: 'acme', name: 'widgets' }, branches: ['main'], builders: ['default'], backfill: 10 };

describe('GitHub source', { timeout: 300_000 }, () => {
  let world: GitHubWorld;
  let source: Source;
  beforeEach(async () => {
    world = await startGitHubWorld();
    source = createGitHubSource({ client: createGitHubClient({ credentials: { token: TEST_TOKEN }, baseUrl: world.github.url }), etags: createStateEtagCache(createMemoryState()) });
  });
  afterEach(async () => {
    await world.close();
  });

  /** Empty commits on main; returns their hashes, oldest first. */
  async function commitMany(count: number): Promise<string[]> {
    const hashes: string[] = [];
    for (let i = 1; i <= count; i++) hashes.push(await world.upstream.commit({}, `commit ${i}`));
    return hashes;
  }
  const requestsSince = (start: number) => world.github.requests.slice(start);

  it('polls an unchanged branch with one conditional request, answered 304, that costs no rate limit', async () => {
    const [head] = await commitMany(1);
    const first = await source.changes(repo, 'main', undefined, 10);
    assert.equal(first.head, head);
    const remaining = world.github.rateLimit().remaining;
    const start = world.github.requests.length;

    assert.deepEqual(await source.changes(repo, 'main', first.head, 10), { head, commits: [], forced: false, skipped: 0 });
    assert.deepEqual(requestsSince(start), [{ method: 'GET', path: '/repos/acme/widgets/commits/main', status: 304 }]);
    assert.equal(world.github.rateLimit().remaining, remaining);

    const [next] = await commitMany(1);
    const moved = await source.changes(repo, 'main', first.head, 10);
    assert.equal(moved.head, next, 'a push changes the ETag: the new head is seen');
    assert.deepEqual(moved.commits.map((c) => c.hash), [next]);
  });

  it('pages through more than 100 commits on a first poll and through compare, fetching only the pages it keeps', async () => {
    const hashes = await commitMany(250);
    let start = world.github.requests.length;
    const first = await source.changes(repo, 'main', undefined, 150);
    assert.deepEqual(first.commits.map((c) => c.hash), hashes.slice(100));
    assert.equal(requestsSince(start).filter((r) => r.path === '/repos/acme/widgets/commits').length, 2, '150 commits are two pages of 100');

    start = world.github.requests.length;
    const since = await source.changes(repo, 'main', hashes[9], 30);
    assert.deepEqual(since.commits.map((c) => c.hash), hashes.slice(220));
    assert.equal(since.skipped, 210);
    assert.equal(since.forced, false);
    // 240 new commits: page 1 gives the count, and the newest 30 sit on page 3 alone.
    assert.equal(requestsSince(start).filter((r) => r.path.startsWith('/repos/acme/widgets/compare/')).length, 2);

    const wide = await source.changes(repo, 'main', hashes[9], 150);
    assert.deepEqual(wide.commits.map((c) => c.hash), hashes.slice(100));
    assert.equal(wide.skipped, 90);
  });

  it('archive has no leading directory, and holds exactly the commit\'s files with their modes and links', async () => {
    await world.upstream.commit({ 'README.md': '# widgets\n', 'bin/run.sh': '#!/bin/sh\necho hi\n', 'src/a/b.go': 'package a\n' }, 'files', { executable: ['bin/run.sh'] });
    await symlink('README.md', join(world.upstream.path, 'link.md'));
    await world.upstream.git('add', 'link.md');
    const head = await world.upstream.commit({}, 'a link');

    const entries = await tarEntries(await source.archive(repo, head));
    const listed = (await run('git', ['-C', world.upstream.path, 'ls-tree', '-r', '--name-only', head])).stdout.trim().split('\n').sort();
    assert.deepEqual(entries.filter((e) => e.type !== 'Directory').map((e) => e.path).sort(), listed);
    assert.ok(entries.every((e) => !e.path.startsWith('acme-widgets-')), `no prefix: ${entries.map((e) => e.path).join(', ')}`);
    assert.equal(entries.find((e) => e.path === 'bin/run.sh')?.mode, 0o755);
    assert.equal(entries.find((e) => e.path === 'README.md')?.mode, 0o644);
    const link = entries.find((e) => e.path === 'link.md');
    assert.deepEqual([link?.type, link?.linkpath], ['SymbolicLink', 'README.md']);
    assert.equal(entries.find((e) => e.path === 'src/a/b.go')?.data, 'package a\n');
  });

  it('changedFiles beyond the compare API\'s 300 files compares the whole trees', async () => {
    const many = Object.fromEntries(Array.from({ length: 320 }, (_, i) => [`gen/f${String(i).padStart(3, '0')}.txt`, `${i}\n`]));
    const base = await world.upstream.commit({ ...many, 'same.txt': 'same\n' }, 'many');
    const head = await world.upstream.commit(Object.fromEntries(Object.keys(many).map((path) => [path, 'changed\n'])), 'change them all');
    const start = world.github.requests.length;
    assert.deepEqual(await source.changedFiles(repo, base, head), Object.keys(many).sort());
    assert.equal(requestsSince(start).filter((r) => r.path.includes('/git/trees/')).length, 2);
  });

  it('a repo that is not on GitHub is refused with a PermanentError naming it', async () => {
    const { github: _github, ...local } = repo;
    await assert.rejects(source.changes({ ...local, name: 'elsewhere' }, 'main', undefined, 1), (error: unknown) => error instanceof PermanentError && error.message.includes('elsewhere'));
  });
});

interface TarEntry {
  path: string;
  type: string;
  mode: number | undefined;
  linkpath?: string;
  data: string;
}

async function tarEntries(tarball: Uint8Array): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const pending: Promise<void>[] = [];
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry) => {
        const kept: TarEntry = { path: entry.path, type: entry.type, mode: entry.mode, ...(entry.linkpath ? { linkpath: entry.linkpath } : {}), data: '' };
        entries.push(kept);
        pending.push(entry.concat().then((data) => void (kept.data = data.toString('utf8'))));
      },
    });
    parser.on('error', reject);
    parser.on('end', () => resolve());
    parser.end(gunzipSync(tarball));
  });
  await Promise.all(pending);
  return entries;
}
