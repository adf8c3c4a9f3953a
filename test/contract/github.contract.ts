import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { PermanentError, RetryableError } from '../../shared/core/errors.ts';
import type { GitHubRepo } from '../../shared/core/model/types.ts';
import type { BuilderStatus, GitHub } from '../../shared/ports/github.ts';

/** A status as a reader of the commit's page sees it: queued and running are both pending, an error a failure. */
export interface ShownStatus {
  context: string;
  state: 'pending' | 'success' | 'failure';
  description: string;
  targetUrl: string | undefined;
}

/** What the suite needs from a backend's world: the port under test, ways to arrange fixtures and to see effects. */
export interface GitHubHarness {
  github: GitHub;
  /** The repository the world serves, with a first commit on `main`. */
  repo: GitHubRepo;
  /** The organisation the credentials may ask about (under an App, the one it is installed on). */
  org: string;
  /** How many pull requests one page of the adapter's list holds; the memory fake has no pages. */
  pageSize: number;
  /** A new commit of the repository, on no branch anyone watches: something to set statuses on. */
  commit(): Promise<string>;
  /**
   * Opens a pull request by `author` onto `main` from a new commit on the new branch `ref`, of the repository itself
   * or of a fork (another repository); `closed` records it closed. Returns its number and what it was opened from.
   */
  openPullRequest(input: { author: string; title: string; ref: string; fork: boolean; closed?: boolean }): Promise<{
    number: number;
    head: string;
    base: string;
    headRepo: string;
  }>;
  /** Makes `logins` the organisation's members (the credentials' own login stays one, as hermetic's does). */
  setOrgMembers(org: string, logins: readonly string[]): void;
  /** Makes `logins` the active members of the team `org/team`. */
  setTeamMembers(org: string, team: string, logins: readonly string[]): void;
  /** What GitHub shows beside `sha`: one entry per context, its latest, in the order contexts first appeared. */
  shown(sha: string): ShownStatus[];
  /** Every status or check run the world keeps, history and timestamps included: a repeat must leave it deep-equal. */
  kept(): readonly unknown[];
  /** Every comment, oldest first. */
  comments(): Array<{ number: number; body: string }>;
  /** Spends the rate limit: every request is refused until it resets. Absent where there is none. */
  spendRateLimit?(): void;
  cleanup(): Promise<void>;
}

/**
 * Every GitHub adapter and fake must pass this suite unchanged. `make` gives a fresh world for each test;
 * `exempt.rateLimit` says why a backend with no rate limit skips that one test.
 */
export function githubContract(backend: string, make: () => Promise<GitHubHarness>, exempt: { rateLimit?: string } = {}): void {
  describe(`GitHub contract: ${backend}`, { timeout: 300_000 }, () => {
    let h: GitHubHarness;
    beforeEach(async () => {
      h = await make();
    });
    afterEach(async () => {
      await h.cleanup();
    });

    it('answers a pull request by number with every field; an unknown number is a PermanentError', async () => {
      const own = await h.openPullRequest({ author: 'alice', title: 'a feature', ref: 'feature', fork: false });
      const forked = await h.openPullRequest({ author: 'someone', title: 'a fix from a fork', ref: 'fix', fork: true });
      const pull = await h.github.pullRequest(h.repo, own.number);
      const full = `${h.repo.owner}/${h.repo.name}`;
      assert.deepEqual({ ...pull, url: '' }, {
        number: own.number,
        state: 'open',
        title: 'a feature',
        author: 'alice',
        head: { sha: own.head, ref: 'feature', repo: full },
        base: { sha: own.base, ref: 'main' },
        fromFork: false,
        url: '',
      });
      assert.equal(own.headRepo, full);
      assert.ok(pull.url.endsWith(`/${full}/pull/${own.number}`), `its page: ${pull.url}`);

      const fromFork = await h.github.pullRequest(h.repo, forked.number);
      assert.notEqual(forked.headRepo, full);
      assert.deepEqual([fromFork.fromFork, fromFork.head, fromFork.author, fromFork.title], [true, { sha: forked.head, ref: 'fix', repo: forked.headRepo }, 'someone', 'a fix from a fork']);

      await assert.rejects(h.github.pullRequest(h.repo, forked.number + 100), PermanentError);
    });

    it('lists open pull requests only, newest first, across more than one page', async () => {
      const count = h.pageSize + 2;
      const opened: number[] = [];
      for (let i = 0; i < count; i++) {
        const { number } = await h.openPullRequest({ author: 'alice', title: `change ${i}`, ref: `change-${i}`, fork: false, closed: i === 1 });
        opened.push(number);
      }
      const open = await h.github.openPullRequests(h.repo);
      const closed = opened[1];
      assert.deepEqual(open.map((pull) => pull.number), opened.filter((number) => number !== closed).reverse());
      assert.ok(open.every((pull) => pull.state === 'open'));
      assert.equal(open.at(-1)?.title, 'change 0', 'each with its fields');
    });

    it('answers organisation and team membership', async () => {
      h.setOrgMembers(h.org, ['alice', 'bob']);
      h.setTeamMembers(h.org, 'core', ['alice']);
      assert.equal(await h.github.isOrgMember(h.org, 'alice'), true);
      assert.equal(await h.github.isOrgMember(h.org, 'mallory'), false);
      assert.equal(await h.github.isTeamMember(h.org, 'core', 'alice'), true);
      assert.equal(await h.github.isTeamMember(h.org, 'core', 'bob'), false, 'in the organisation, not the team');
      assert.equal(await h.github.isTeamMember(h.org, 'nobody', 'alice'), false, 'no such team');
    });

    it('shows a status beside its commit; the same status again changes nothing', async () => {
      const sha = await h.commit();
      const queued: BuilderStatus = { sha, context: 'hermetic/linux', state: 'queued', description: 'queued', targetUrl: 'https://ci.example/build/1' };
      await h.github.setStatus(h.repo, queued);
      assert.deepEqual(h.shown(sha), [{ context: 'hermetic/linux', state: 'pending', description: 'queued', targetUrl: 'https://ci.example/build/1' }]);
      assert.equal(h.kept().length, 1, 'one status kept, not two');
      const before = structuredClone(h.kept());
      await h.github.setStatus(h.repo, { ...queued });
      assert.deepEqual(h.kept(), before, 'nothing new kept: one status, not two');
    });

    it('a new state replaces the shown one, each context and commit on its own', async () => {
      const sha = await h.commit();
      const other = await h.commit();
      const status: BuilderStatus = { sha, context: 'hermetic/linux', state: 'queued', description: 'queued', targetUrl: 'https://ci.example/build/1' };
      await h.github.setStatus(h.repo, status);
      await h.github.setStatus(h.repo, { ...status, state: 'running', description: 'running' });
      assert.deepEqual(h.shown(sha).map((s) => [s.state, s.description]), [['pending', 'running']]);
      await h.github.setStatus(h.repo, { ...status, context: 'hermetic/windows', state: 'error', description: 'could not start' });
      await h.github.setStatus(h.repo, { ...status, state: 'success', description: 'passed' });
      await h.github.setStatus(h.repo, { ...status, sha: other, state: 'failure', description: 'failed' });
      assert.deepEqual(h.shown(sha), [
        { context: 'hermetic/linux', state: 'success', description: 'passed', targetUrl: 'https://ci.example/build/1' },
        { context: 'hermetic/windows', state: 'failure', description: 'could not start', targetUrl: 'https://ci.example/build/1' },
      ]);
      assert.deepEqual(h.shown(other).map((s) => [s.context, s.state]), [['hermetic/linux', 'failure']]);
    });

    it('comments land with their body on their pull request; one that does not exist is a PermanentError', async () => {
      const { number } = await h.openPullRequest({ author: 'alice', title: 'a feature', ref: 'feature', fork: false });
      await h.github.comment(h.repo, number, 'trybots: all green');
      assert.deepEqual(h.comments(), [{ number, body: 'trybots: all green' }]);
      await assert.rejects(h.github.comment(h.repo, number + 100, 'nobody reads this'), PermanentError);
      assert.equal(h.comments().length, 1);
    });

    it('a spent rate limit is a RetryableError saying when to come back, from every call', { skip: exempt.rateLimit ?? false }, async () => {
      const { number } = await h.openPullRequest({ author: 'alice', title: 'a feature', ref: 'feature', fork: false });
      const sha = await h.commit();
      h.setOrgMembers(h.org, ['alice']);
      h.setTeamMembers(h.org, 'core', ['alice']);
      if (h.spendRateLimit === undefined) throw new Error(`${backend} can neither spend its rate limit nor says why it is exempt`);
      h.spendRateLimit();
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['pullRequest', () => h.github.pullRequest(h.repo, number)],
        ['openPullRequests', () => h.github.openPullRequests(h.repo)],
        ['isOrgMember', () => h.github.isOrgMember(h.org, 'alice')],
        ['isTeamMember', () => h.github.isTeamMember(h.org, 'core', 'alice')],
        ['setStatus', () => h.github.setStatus(h.repo, { sha, context: 'hermetic/linux', state: 'queued', description: 'queued' })],
        ['comment', () => h.github.comment(h.repo, number, 'hello')],
      ];
      for (const [name, call] of calls) {
        await assert.rejects(call(), (error) => {
          assert.ok(error instanceof RetryableError, `${name}: ${String(error)}`);
          assert.ok(error.retryAfterMs !== undefined && error.retryAfterMs > 0, `${name}: retry after ${error.retryAfterMs} ms`);
          return true;
        });
      }
      assert.deepEqual(h.shown(sha), []);
      assert.deepEqual(h.comments(), []);
    });
  });
}
