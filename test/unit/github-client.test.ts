import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { createGitHubClient, type GitHubCredentials } from '../../shared/adapters/github/client.ts';
import { createGitHubSource } from '../../shared/adapters/github/github-source.ts';
import { createStateEtagCache } from '../../shared/adapters/github/state-etag-cache.ts';
import { RetryableError } from '../../shared/core/errors.ts';
import type { Repo } from '../../shared/core/model/types.ts';
import type { Fields, Logger } from '../../shared/ports/log.ts';
import { createMemoryState } from '../fakes/memory-state.ts';
import { appKeyPair, startGitHubWorld, TEST_APP_ID, TEST_INSTALLATION_ID, TEST_TOKEN, type GitHubWorld } from '../helpers/github-world.ts';

const repo: Repo = { name: 'widgets', url: 'https://github.com/acme/widgets.git', github: { owner: 'acme', name: 'widgets' }, branches: ['main'], builders: ['default'], backfill: 10 };

describe('GitHub client', { timeout: 300_000 }, () => {
  let world: GitHubWorld | undefined;
  afterEach(async () => {
    await world?.close();
    world = undefined;
  });

  async function sourceOver(world: GitHubWorld, credentials: GitHubCredentials, logger?: Logger) {
    const client = createGitHubClient({ credentials, baseUrl: world.github.url, ...(logger === undefined ? {} : { logger }) });
    return createGitHubSource({ client, etags: createStateEtagCache(createMemoryState()) });
  }

  it('a spent rate limit is a RetryableError that waits until the reset, and names it', async () => {
    world = await startGitHubWorld();
    const head = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    const source = await sourceOver(world, { token: TEST_TOKEN });
    world.github.setRateLimitRemaining(0);
    const { reset } = world.github.rateLimit();
    const error = await source.fetchCommit(repo, head).then(
      () => assert.fail('resolved under a spent rate limit'),
      (thrown: unknown) => thrown,
    );
    assert.ok(error instanceof RetryableError, `RetryableError, not ${String(error)}`);
    const expected = reset * 1000 - Date.now();
    assert.ok(error.retryAfterMs !== undefined && Math.abs(error.retryAfterMs - expected) < 5000, `retryAfterMs ${error.retryAfterMs} is near ${expected}`);
    assert.ok(error.message.includes(new Date(reset * 1000).toISOString()), error.message);
    assert.equal(world.github.requests.at(-1)?.status, 403);
  });

  for (const status of [403, 429] as const) {
    it(`a secondary rate limit (${status}) is a RetryableError after its retry-after`, async () => {
      world = await startGitHubWorld();
      const head = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
      const source = await sourceOver(world, { token: TEST_TOKEN });
      world.github.secondaryRateLimit(42, { status });
      await assert.rejects(source.fetchCommit(repo, head), (error: unknown) => error instanceof RetryableError && error.retryAfterMs === 42_000);
      assert.equal((await source.fetchCommit(repo, head)).hash, head, 'the next request goes through');
    });
  }

  it('warns once per window when fewer than a tenth of the requests are left', async () => {
    world = await startGitHubWorld();
    const head = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    const warnings: { event: string; fields: Fields | undefined }[] = [];
    const logger: Logger = { info() {}, error() {}, warn: (event, fields) => void warnings.push({ event, fields }) };
    const source = await sourceOver(world, { token: TEST_TOKEN }, logger);
    await source.fetchCommit(repo, head);
    assert.equal(warnings.length, 0);
    world.github.setRateLimitRemaining(400);
    await source.fetchCommit(repo, head);
    await source.fetchCommit(repo, head);
    assert.deepEqual(warnings.map((w) => [w.event, w.fields?.remaining]), [['github.rate_limit_low', 399]]);
  });

  it('a network failure is a RetryableError', async () => {
    world = await startGitHubWorld();
    const head = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    const source = await sourceOver(world, { token: TEST_TOKEN });
    await world.github.close();
    await assert.rejects(source.fetchCommit(repo, head), RetryableError);
  });

  it('an unknown token is refused', async () => {
    world = await startGitHubWorld();
    const head = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    const source = await sourceOver(world, { token: 'ghp_wrong' });
    await assert.rejects(source.fetchCommit(repo, head), (error: unknown) => !(error instanceof RetryableError) && error instanceof Error && /Bad credentials/.test(error.message));
  });

  it('under an App, finds the installation and fetches its token once, then uses it', async () => {
    const keys = appKeyPair();
    world = await startGitHubWorld({ app: { id: TEST_APP_ID, publicKey: keys.publicKey, installations: { acme: TEST_INSTALLATION_ID } } });
    const head = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    const source = await sourceOver(world, { appId: TEST_APP_ID, privateKey: keys.privateKey });
    for (let i = 0; i < 3; i++) assert.equal((await source.fetchCommit(repo, head)).hash, head);
    const count = (path: string) => world?.github.requests.filter((r) => r.path === path).length;
    assert.equal(count('/repos/acme/widgets/installation'), 1);
    assert.equal(count(`/app/installations/${TEST_INSTALLATION_ID}/access_tokens`), 1);
    assert.equal(count(`/repos/acme/widgets/commits/${head}`), 3);
  });

  it('under an App, a JWT signed with another key is refused and no token is issued', async () => {
    world = await startGitHubWorld({ app: { id: TEST_APP_ID, publicKey: appKeyPair().publicKey, installations: { acme: TEST_INSTALLATION_ID } } });
    const head = await world.upstream.commit({ 'a.txt': 'a\n' }, 'a');
    const source = await sourceOver(world, { appId: TEST_APP_ID, privateKey: appKeyPair().privateKey, installationId: TEST_INSTALLATION_ID });
    await assert.rejects(source.fetchCommit(repo, head), /JSON web token/);
    assert.deepEqual(world.github.requests.map((r) => [r.path, r.status]), [[`/app/installations/${TEST_INSTALLATION_ID}/access_tokens`, 401]]);
  });
});
