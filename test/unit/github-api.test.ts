import assert from 'node:assert/strict';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { createGitHubApi } from '../../shared/adapters/github/github-api.ts';
import { createGitHubClient, type GitHubCredentials } from '../../shared/adapters/github/client.ts';
import { createStateEtagCache } from '../../shared/adapters/github/state-etag-cache.ts';
import { createGitSource } from '../../shared/adapters/local/git-source.ts';
import { PermanentError } from '../../shared/core/errors.ts';
import type { GitHub } from '../../shared/ports/github.ts';
import { createMemoryState } from '../fakes/memory-state.ts';
import { createTestRepo } from '../helpers/git-repo.ts';
import { appKeyPair, startGitHubWorld, TEST_APP_ID, TEST_INSTALLATION_ID, TEST_TOKEN, type GitHubWorld } from '../helpers/github-world.ts';

const widgets = { owner: 'acme', name: 'widgets' };
/** The App's key pair, made once for the file: a 2048-bit RSA pair takes a while. */
const keys = appKeyPair();

describe('GitHub port', { timeout: 300_000 }, () => {
  let world: GitHubWorld | undefined;
  afterEach(async () => {
    await world?.close();
    world = undefined;
  });

  async function apiOver(credentials: GitHubCredentials | 'app'): Promise<{ api: GitHub; world: GitHubWorld }> {
    world = await startGitHubWorld({ app: { id: TEST_APP_ID, publicKey: keys.publicKey, installations: { acme: TEST_INSTALLATION_ID } } });
    const resolved = credentials === 'app' ? { appId: TEST_APP_ID, privateKey: keys.privateKey } : credentials;
    const client = createGitHubClient({ credentials: resolved, baseUrl: world.github.url });
    return { api: createGitHubApi({ client, etags: createStateEtagCache(createMemoryState()) }), world };
  }

  it('under a token, a status is a commit status: pending while queued or running, the description cut to 140', async () => {
    const { api, world } = await apiOver({ token: TEST_TOKEN });
    const head = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    await api.setStatus(widgets, { sha: head, context: 'hermetic/linux', state: 'running', description: 'x'.repeat(200), targetUrl: 'https://ci.example/build/1' });
    await api.setStatus(widgets, { sha: head, context: 'hermetic/linux', state: 'error', description: 'could not start' });
    assert.deepEqual(
      world.github.statuses.map((s) => [s.sha, s.context, s.state, [...(s.description ?? '')].length, s.target_url]),
      [
        [head, 'hermetic/linux', 'pending', 140, 'https://ci.example/build/1'],
        [head, 'hermetic/linux', 'error', 15, null],
      ],
    );
    assert.deepEqual(world.github.checkRuns, []);
  });

  it('under a token, the status already shown is not posted again, even past the first page of contexts', async () => {
    const { api, world } = await apiOver({ token: TEST_TOKEN });
    const head = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    const status = (n: number) => ({ sha: head, context: `hermetic/builder-${n}`, state: 'success', description: 'passed' }) as const;
    for (let n = 0; n < 101; n++) await api.setStatus(widgets, status(n));
    // The combined status lists the newest first, so the first context set is on its second page.
    await api.setStatus(widgets, status(0));
    assert.equal(world.github.statuses.length, 101);
    await api.setStatus(widgets, { ...status(0), state: 'failure', description: 'failed' });
    assert.deepEqual(world.github.statuses.slice(100).map((s) => [s.context, s.state]), [['hermetic/builder-100', 'success'], ['hermetic/builder-0', 'failure']]);
  });

  it('under an App, a status is one check run per commit and context, updated in place and left alone when unchanged', async () => {
    const { api, world } = await apiOver('app');
    const head = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    const queued = { sha: head, context: 'hermetic/linux', state: 'queued', description: 'waiting for a machine', targetUrl: 'https://ci.example/build/1' } as const;
    await api.setStatus(widgets, queued);
    await api.setStatus(widgets, queued);
    assert.equal(world.github.checkRuns.length, 1);
    assert.equal(world.github.requests.filter((r) => r.method === 'PATCH').length, 0, 'the same status again changes nothing');
    const [run] = world.github.checkRuns;
    assert.deepEqual([run?.name, run?.status, run?.conclusion, run?.details_url, run?.output.title], ['hermetic/linux', 'queued', null, 'https://ci.example/build/1', 'waiting for a machine']);

    await api.setStatus(widgets, { ...queued, state: 'success', description: 'all tests passed' });
    assert.equal(world.github.checkRuns.length, 1);
    assert.deepEqual([run?.status, run?.conclusion, run?.output.summary], ['completed', 'success', 'all tests passed']);

    await api.setStatus(widgets, { ...queued, context: 'hermetic/windows', state: 'running' });
    assert.deepEqual(world.github.checkRuns.map((r) => [r.name, r.status]), [['hermetic/linux', 'completed'], ['hermetic/windows', 'in_progress']]);
    assert.deepEqual(world.github.statuses, []);
  });

  it('answers organisation and team membership, and no for what GitHub will not confirm', async () => {
    const { api, world } = await apiOver({ token: TEST_TOKEN });
    world.github.setOrgMembers('acme', ['octocat', 'alice']);
    world.github.setOrgMembers('elsewhere', ['alice']);
    world.github.setTeamMembers('acme', 'core', { alice: 'active', bob: 'pending' });
    assert.equal(await api.isOrgMember('acme', 'alice'), true);
    assert.equal(await api.isOrgMember('acme', 'mallory'), false);
    assert.equal(await api.isOrgMember('elsewhere', 'alice'), false, 'octocat is outside "elsewhere": GitHub redirects, which is a no');
    assert.equal(world.github.requests.at(-1)?.status, 302);
    assert.equal(await api.isTeamMember('acme', 'core', 'alice'), true);
    assert.equal(await api.isTeamMember('acme', 'core', 'bob'), false, 'a pending invitation is not membership');
    assert.equal(await api.isTeamMember('acme', 'core', 'mallory'), false);
  });

  it('a pull request from a fork has fromFork, and its head is fetchable from the base repository', async () => {
    const { api, world } = await apiOver({ token: TEST_TOKEN });
    const base = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    await world.upstream.git('checkout', '--quiet', '-b', 'feature');
    const inRepo = await world.upstream.commit({ 'b.txt': 'b\n' }, 'feature');
    const fork = await createTestRepo(join(world.root, 'fork'));
    await fork.git('fetch', '--quiet', world.upstream.path, 'main:refs/heads/upstream');
    await fork.git('checkout', '--quiet', '-b', 'fix', 'upstream');
    const fromFork = await fork.commit({ 'c.txt': 'c\n' }, 'fix from a fork');
    world.github.addRepo('someone/widgets', fork.path);
    const own = await world.github.addPullRequest({ repo: 'acme/widgets', base: 'main', head: { ref: 'feature' }, author: 'octocat', title: 'a feature' });
    const forked = await world.github.addPullRequest({ repo: 'acme/widgets', base: 'main', head: { repo: 'someone/widgets', ref: 'fix' }, author: 'someone' });

    const ownPull = await api.pullRequest(widgets, own);
    assert.deepEqual(ownPull, { number: own, state: 'open', title: 'a feature', author: 'octocat', head: { sha: inRepo, ref: 'feature', repo: 'acme/widgets' }, base: { sha: base, ref: 'main' }, fromFork: false, url: `${world.github.url}/acme/widgets/pull/${own}` });
    const forkPull = await api.pullRequest(widgets, forked);
    assert.deepEqual([forkPull.fromFork, forkPull.head.repo, forkPull.head.sha, forkPull.author], [true, 'someone/widgets', fromFork, 'someone']);

    const gitSource = createGitSource({ cacheDir: join(world.root, 'mirrors'), timeoutMs: 30_000 });
    const fetched = await gitSource.fetchCommit({ name: 'widgets', url: world.upstream.path, branches: ['main'], builders: ['default'], backfill: 1 }, fromFork, `refs/pull/${forked}/head`);
    assert.equal(fetched.subject, 'fix from a fork');

    world.github.removeRepo('someone/widgets');
    const orphaned = await api.pullRequest(widgets, forked);
    assert.deepEqual([orphaned.fromFork, orphaned.head.repo], [true, ''], 'a deleted fork leaves no head repository');
    await assert.rejects(api.pullRequest(widgets, 999), PermanentError);
  });

  it('lists more than 100 open pull requests newest first, and an unchanged list again costs 304s only', async () => {
    const { api, world } = await apiOver({ token: TEST_TOKEN });
    await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    await world.upstream.git('branch', 'topic');
    for (let i = 0; i < 105; i++) await world.github.addPullRequest({ repo: 'acme/widgets', base: 'main', head: { ref: 'topic' }, author: 'octocat', state: i === 3 ? 'closed' : 'open' });
    const first = await api.openPullRequests(widgets);
    assert.equal(first.length, 104);
    assert.deepEqual(first.slice(0, 2).map((p) => p.number), [105, 104]);
    assert.ok(!first.some((p) => p.number === 4), 'the closed one is left out');

    const remaining = world.github.rateLimit().remaining;
    const start = world.github.requests.length;
    assert.deepEqual(await api.openPullRequests(widgets), first);
    assert.deepEqual(world.github.requests.slice(start).map((r) => r.status), [304, 304]);
    assert.equal(world.github.rateLimit().remaining, remaining);
  });

  it('comments on a pull request, and refuses one that does not exist', async () => {
    const { api, world } = await apiOver({ token: TEST_TOKEN });
    await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    await world.upstream.git('branch', 'topic');
    const number = await world.github.addPullRequest({ repo: 'acme/widgets', base: 'main', head: { ref: 'topic' }, author: 'alice' });
    await api.comment(widgets, number, 'trybot: all green');
    assert.deepEqual(world.github.comments, [{ repo: 'acme/widgets', number, body: 'trybot: all green', author: 'octocat' }]);
    await assert.rejects(api.comment(widgets, 404, 'nobody reads this'), PermanentError);
  });
});
