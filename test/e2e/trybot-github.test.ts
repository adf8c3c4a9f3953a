import { sign } from '@octokit/webhooks-methods';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { main } from '../../shared/cli/main.ts';
import { loadConfig } from '../../shared/core/config/config.ts';
import type { GitHubEnvironment } from '../../shared/core/config/github-environment.ts';
import type { TryRun } from '../../shared/core/model/types.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { collections } from '../../shared/ports/state.ts';
import { startLocalRuntime, type LocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { createTestRepo } from '../helpers/git-repo.ts';
import { appKeyPair, startGitHubWorld, TEST_INSTALLATION_ID, TEST_APP_ID, TEST_TOKEN, type GitHubWorld } from '../helpers/github-world.ts';
import { hangGuardMs, waitUntil } from '../helpers/wait.ts';

const webhookSecret = 'the webhook secret';
const repo = 'acme/widgets';

/** How a builder's status shows on the fake GitHub, whichever way this auth reports it. */
type Shown = { state: string; url: string | null | undefined; description: string | null | undefined };

for (const auth of ['token', 'app'] as const) {
  describe(`trybots end to end on a fake GitHub (${auth})`, { timeout: 300_000 }, () => {
    let world: GitHubWorld;
    let runtime: LocalRuntime;
    let configFile: string;

    const keys = appKeyPair();
    before(async () => {
      world = await startGitHubWorld(auth === 'app' ? { app: { id: TEST_APP_ID, publicKey: keys.publicKey, installations: { acme: TEST_INSTALLATION_ID } } } : {});
      // The token's own account (octocat) is a member: GitHub shows others' private membership only to members.
      world.github.setOrgMembers('acme', ['gopher', 'octocat']);
      await world.upstream.commit({ 'test.sh': 'echo main is fine\n' }, 'main');
      const github: GitHubEnvironment = {
        auth: auth === 'token' ? { token: TEST_TOKEN } : { appId: String(TEST_APP_ID), privateKey: keys.privateKey },
        apiUrl: world.github.url,
        webhookSecret,
      };
      configFile = join(world.root, 'config.json');
      await writeFile(
        configFile,
        JSON.stringify({
          repos: [{ name: 'widgets', url: world.upstream.path, github: repo, builders: ['check'] }],
          trybots: { trusted: { users: ['rsc'], orgs: ['acme'] } },
          builders: { check: { type: 'command', command: 'sh ./test.sh', timeoutSeconds: 60 } },
        }),
      );
      const catalog = await loadConfig(configFile);
      runtime = await startLocalRuntime({ dataDir: join(world.root, 'data'), catalog, logger: silentLogger, pollIntervalMs: 0, containers: 'off', github });
    });
    after(async () => {
      await runtime?.stop();
      await world?.close();
    });

    /** Opens a pull request whose head branch has `files` over main; returns its number and head. */
    async function pullRequest(branch: string, files: Record<string, string>): Promise<{ number: number; head: string }> {
      await world.upstream.git('checkout', '--quiet', '-B', branch, 'main');
      const head = await world.upstream.commit(files, `change on ${branch}`);
      await world.upstream.git('checkout', '--quiet', 'main');
      return { number: await world.github.addPullRequest({ repo, base: 'main', head: { ref: branch }, author: 'contributor' }), head };
    }

    /** Delivers a signed `issue_comment` webhook, as GitHub does, to the runtime's /webhook. */
    async function comment(number: number, login: string, body: string): Promise<number> {
      const payload = JSON.stringify({
        action: 'created',
        issue: { number, pull_request: { url: `${world.github.url}/repos/${repo}/pulls/${number}` } },
        comment: { body, user: { login, type: 'User' } },
        repository: { full_name: repo },
      });
      const response = await fetch(`${runtime.url}/webhook`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': 'issue_comment', 'x-hub-signature-256': await sign(webhookSecret, payload) },
        body: payload,
      });
      return response.status;
    }

    /** Waits until the pipeline has handled everything, then the trybot requests of `commit`. */
    async function settle(commit: string): Promise<TryRun[]> {
      const runsOf = async () => (await runtime.deps.state.query(collections.trybots)).filter((run) => run.commit === commit);
      const recorded = async () => {
        const runs = await runsOf();
        return runs.length > 0 && runs;
      };
      const runs = await waitUntil(recorded, `a trybot request of ${commit} is recorded`, { everyMs: 100 });
      await runtime.waitForBuilds(runs.flatMap((run) => run.builds.map((entry) => entry.buildId)), hangGuardMs);
      return runsOf();
    }

    function shown(sha: string): Shown[] {
      return auth === 'token'
        ? world.github.statuses.filter((status) => status.sha === sha && status.context === 'hermetic-try/check').map((status) => ({ state: status.state, url: status.target_url, description: status.description }))
        : world.github.checkRuns
            .filter((run) => run.head_sha === sha && run.name === 'hermetic-try/check')
            .map((run) => ({ state: run.conclusion ?? run.status, url: run.details_url, description: run.output.title }));
    }

    it('a trusted /try builds the head and reports the verdict beside it, linked to the build', async () => {
      const good = await pullRequest('good', { 'test.sh': 'echo fine\n' });
      assert.equal(await comment(good.number, 'rsc', '/try'), 202);
      const [run] = await settle(good.head);
      assert.equal(run?.status, 'accepted');
      const final = shown(good.head).at(-1);
      assert.equal(final?.state, 'success');
      assert.match(final?.url ?? '', new RegExp(`/build/${run?.builds[0]?.buildId}$`));

      const bad = await pullRequest('bad', { 'test.sh': 'echo broken; exit 1\n' });
      assert.equal(await comment(bad.number, 'gopher', 'Looks odd.\n/try check'), 202, 'an organisation member');
      const [tried] = await settle(bad.head);
      assert.equal(tried?.status, 'accepted', JSON.stringify(tried));
      assert.equal(shown(bad.head).at(-1)?.state, 'failure');
      if (auth === 'app') assert.equal(world.github.checkRuns.filter((entry) => entry.head_sha === bad.head).length, 1, 'one check run, updated');
    });

    it("an untrusted /try builds nothing until a trusted person's /try; that approval does not carry to the next push", async () => {
      const change = await pullRequest('outside', { 'test.sh': 'echo from outside\n' });
      assert.equal(await comment(change.number, 'mallory', '/try'), 202);
      const [waiting] = await settle(change.head);
      assert.equal(waiting?.status, 'waiting-approval');
      assert.deepEqual(shown(change.head), [], 'nothing shown beside an unapproved commit');
      assert.ok(world.github.comments.some((entry) => entry.number === change.number && /waiting for approval/.test(entry.body)));
      const builds = async (commit: string) => (await runtime.deps.state.query(collections.builds)).filter((build) => build.commit === commit);
      assert.deepEqual(await builds(change.head), []);

      assert.equal(await comment(change.number, 'rsc', '/try'), 202);
      const [approved] = await settle(change.head);
      assert.equal(approved?.status, 'accepted');
      assert.equal(approved?.acceptedBy, 'rsc');
      assert.equal(shown(change.head).at(-1)?.state, 'success');

      await world.upstream.git('checkout', '--quiet', 'outside');
      await world.upstream.commit({ 'test.sh': 'echo pushed again\n' }, 'another push');
      await world.upstream.git('checkout', '--quiet', 'main');
      const next = await world.github.syncPullRequest(repo, change.number);
      assert.equal(await comment(change.number, 'mallory', '/try'), 202);
      const [again] = await settle(next);
      assert.equal(again?.status, 'waiting-approval');
      assert.deepEqual(await builds(next), []);
    });

    it('builds a pull request from a fork that edits the config and the test script with the trusted config, and no credential', async () => {
      const fork = await createTestRepo(join(world.root, 'fork'));
      await fork.git('fetch', '--quiet', world.upstream.path, 'main:refs/heads/upstream');
      await fork.git('checkout', '--quiet', '-b', 'takeover', 'upstream');
      const head = await fork.commit(
        {
          'hermetic.config.json': JSON.stringify({ trybots: { trusted: { users: ['mallory'] } }, builders: { check: { type: 'command', command: 'curl https://evil.example', network: true } } }),
          'test.sh': 'echo "token=${GITHUB_TOKEN:-none} secret=${HERMETIC_WEBHOOK_SECRET:-none}"\n',
        },
        'take over the builders',
      );
      world.github.addRepo('mallory/widgets', fork.path);
      const number = await world.github.addPullRequest({ repo, base: 'main', head: { repo: 'mallory/widgets', ref: 'takeover' }, author: 'mallory' });
      assert.equal(await comment(number, 'mallory', '/try'), 202);
      assert.equal((await settle(head))[0]?.status, 'waiting-approval', "the fork's own config trusts nobody here");
      assert.equal(await comment(number, 'rsc', '/try'), 202);
      const [run] = await settle(head);
      const build = await runtime.deps.state.get(collections.builds, run?.builds[0]?.buildId ?? '');
      assert.equal(build?.status, 'passed');
      const log = await (await fetch(`${runtime.url}/log/${build?.taskId ?? ''}`)).text();
      assert.match(log, /sh \.\/test\.sh/, 'the trusted command ran');
      assert.match(log, /token=none secret=none/);
      assert.doesNotMatch(log, /evil\.example/);
    });

    it('`hermetic try --pr N` asks GitHub for the head, and `--list` shows open pull requests with their requests', async () => {
      const change = await pullRequest('from-cli', { 'test.sh': 'echo from the command line\n' });
      const saved = { ...process.env };
      if (auth === 'token') Object.assign(process.env, { GITHUB_TOKEN: TEST_TOKEN, HERMETIC_GITHUB_API_URL: world.github.url });
      else Object.assign(process.env, { HERMETIC_GITHUB_APP_ID: String(TEST_APP_ID), GITHUB_APP_PRIVATE_KEY: keys.privateKey, HERMETIC_GITHUB_API_URL: world.github.url });
      const run = async (...args: string[]) => {
        let stdout = '';
        let stderr = '';
        const io = { cwd: world.root, stdout: (text: string) => (stdout += `${text}\n`), stderr: (text: string) => (stderr += `${text}\n`), interrupted: new Promise<void>(() => {}) };
        const code = await main(['try', '--repo', 'widgets', '--config', configFile, '--data', join(world.root, 'data'), ...args], io);
        return { code, stdout, stderr };
      };
      try {
        const tried = await run('--pr', String(change.number), '--as', 'rsc', '--wait');
        assert.equal(tried.code, 0, tried.stderr);
        assert.match(tried.stderr, new RegExp(`is at ${change.head.slice(0, 12)}`));
        const listed = await run('--list', '--json');
        assert.equal(listed.code, 0, listed.stderr);
        const rows = JSON.parse(listed.stdout) as Array<{ number: number; head: { sha: string }; trybots: Array<{ status: string }> }>;
        const row = rows.find((entry) => entry.number === change.number);
        assert.equal(row?.head.sha, change.head);
        assert.deepEqual(row?.trybots.map((entry) => entry.status), ['accepted']);
      } finally {
        for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      }
    });

    it('refuses a delivery with a forged signature', async () => {
      const payload = JSON.stringify({ action: 'created', issue: { number: 1, pull_request: {} }, comment: { body: '/try', user: { login: 'rsc', type: 'User' } }, repository: { full_name: repo } });
      const response = await fetch(`${runtime.url}/webhook`, {
        method: 'POST',
        headers: { 'x-github-event': 'issue_comment', 'x-hub-signature-256': await sign('a guess', payload) },
        body: payload,
      });
      assert.equal(response.status, 401);
    });
  });
}
