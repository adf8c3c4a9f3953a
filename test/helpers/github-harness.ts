import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createGitHubApi } from '../../shared/adapters/github/github-api.ts';
import { createGitHubClient } from '../../shared/adapters/github/client.ts';
import { createStateEtagCache } from '../../shared/adapters/github/state-etag-cache.ts';
import type { ShownStatus, GitHubHarness } from '../contract/github.contract.ts';
import { createMemoryGitHub } from '../fakes/memory-github.ts';
import { createMemoryState } from '../fakes/memory-state.ts';
import { createTestRepo, type TestRepo } from './git-repo.ts';
import { appKeyPair, startGitHubWorld, TEST_APP_ID, TEST_INSTALLATION_ID, TEST_TOKEN } from './github-world.ts';

/** The GitHub contract's world over the memory fake: its maps are the fixtures and the effects. */
export async function memoryGitHubHarness(): Promise<GitHubHarness> {
  const github = createMemoryGitHub();
  const base = sha();
  let next = 1;
  return {
    github,
    repo: { owner: 'acme', name: 'demo' },
    org: 'acme',
    pageSize: 1,
    commit: async () => sha(),
    async openPullRequest({ author, title, ref, fork, closed }) {
      const number = next++;
      const head = sha();
      github.open(number, { sha: head, ref, ...(fork ? { repo: 'someone/demo' } : {}) }, base);
      const opened = github.pulls.get(number);
      if (opened === undefined) throw new Error(`memory GitHub did not open #${number}`);
      github.pulls.set(number, { ...opened, author, title, state: closed === true ? 'closed' : 'open' });
      return { number, head, base, headRepo: opened.head.repo };
    },
    setOrgMembers: (org, logins) => void github.orgs.set(org, new Set(logins)),
    setTeamMembers: (org, team, logins) => void github.teams.set(`${org}/${team}`, new Set(logins)),
    shown: (commit) =>
      latestPer(
        github.statuses.filter((status) => status.repo === 'acme/demo' && status.sha === commit),
        (status) => status.context,
      ).map((status) => ({
        context: status.context,
        state: status.state === 'queued' || status.state === 'running' ? 'pending' : status.state === 'success' ? 'success' : 'failure',
        description: status.description,
        targetUrl: status.targetUrl,
      })),
    kept: () => github.statuses,
    comments: () => github.comments.map(({ number, body }) => ({ number, body })),
    cleanup: async () => undefined,
  };
}

/** The App's key pair, made once: a 2048-bit RSA pair takes a while. */
let keys: { privateKey: string; publicKey: string } | undefined;

/**
 * The GitHub contract's world over the real adapter pointed at the fake GitHub server: under a personal token
 * (commit statuses) or as a GitHub App installed on "acme" (check runs). The repository is acme/widgets.
 */
export async function serverGitHubHarness(auth: 'token' | 'app'): Promise<GitHubHarness> {
  keys ??= appKeyPair();
  const world = await startGitHubWorld({ app: { id: TEST_APP_ID, publicKey: keys.publicKey, installations: { acme: TEST_INSTALLATION_ID } } });
  const client = createGitHubClient({
    credentials: auth === 'token' ? { token: TEST_TOKEN } : { appId: TEST_APP_ID, privateKey: keys.privateKey },
    baseUrl: world.github.url,
  });
  const upstream = world.upstream;
  await upstream.commit({ 'README.md': 'widgets\n' }, 'first');
  let fork: TestRepo | undefined;
  const forkRepo = async (): Promise<TestRepo> => {
    if (fork !== undefined) return fork;
    fork = await createTestRepo(join(world.root, 'fork'));
    await fork.git('fetch', '--quiet', upstream.path, 'main:refs/heads/upstream');
    world.github.addRepo('someone/widgets', fork.path);
    return fork;
  };
  const repo = 'acme/widgets';
  return {
    github: createGitHubApi({ client, etags: createStateEtagCache(createMemoryState()) }),
    repo: { owner: 'acme', name: 'widgets' },
    org: 'acme',
    pageSize: 100,
    commit: () => commitOn(upstream, 'main', 'a commit to show statuses of'),
    async openPullRequest({ author, title, ref, fork: fromFork, closed }) {
      const where = fromFork ? await forkRepo() : upstream;
      const head = await commitOn(where, fromFork ? 'upstream' : 'main', title);
      await where.git('update-ref', `refs/heads/${ref}`, head);
      const number = await world.github.addPullRequest({ repo, base: 'main', head: { ref, ...(fromFork ? { repo: 'someone/widgets' } : {}) }, author, title, state: closed === true ? 'closed' : 'open' });
      return { number, head, base: await upstream.git('rev-parse', 'main'), headRepo: fromFork ? 'someone/widgets' : repo };
    },
    // The token acts as octocat, who must be inside the organisation to see private membership.
    setOrgMembers: (org, logins) => world.github.setOrgMembers(org, [...logins, 'octocat']),
    setTeamMembers: (org, team, logins) => world.github.setTeamMembers(org, team, Object.fromEntries(logins.map((login) => [login, 'active' as const]))),
    shown: (commit) => (auth === 'token' ? shownStatuses(world.github.statuses, repo, commit) : shownCheckRuns(world.github.checkRuns, repo, commit)),
    kept: () => (auth === 'token' ? world.github.statuses : world.github.checkRuns),
    comments: () => world.github.comments.filter((comment) => comment.repo === repo).map(({ number, body }) => ({ number, body })),
    spendRateLimit: () => world.github.setRateLimitRemaining(0),
    cleanup: () => world.close(),
  };
}

type FakeGitHub = Awaited<ReturnType<typeof startGitHubWorld>>['github'];

/** Commit statuses as GitHub's combined status shows them: the latest of each context. */
function shownStatuses(statuses: FakeGitHub['statuses'], repo: string, sha: string): ShownStatus[] {
  return latestPer(
    statuses.filter((status) => status.repo === repo && status.sha === sha),
    (status) => status.context,
  ).map((status) => ({
    context: status.context,
    state: status.state === 'pending' ? 'pending' : status.state === 'success' ? 'success' : 'failure',
    description: status.description ?? '',
    targetUrl: status.target_url ?? undefined,
  }));
}

/** Check runs as the commit's page shows them: the latest run of each name, pending until completed. */
function shownCheckRuns(runs: FakeGitHub['checkRuns'], repo: string, sha: string): ShownStatus[] {
  return latestPer(
    runs.filter((run) => run.repo === repo && run.head_sha === sha),
    (run) => run.name,
  ).map((run) => ({
    context: run.name,
    state: run.status !== 'completed' ? 'pending' : run.conclusion === 'success' ? 'success' : 'failure',
    description: run.output.title ?? '',
    targetUrl: run.details_url ?? undefined,
  }));
}

/** The last item of each key, in the order the keys first appear. */
function latestPer<T>(items: readonly T[], key: (item: T) => string): T[] {
  const latest = new Map<string, T>();
  for (const item of items) latest.set(key(item), item);
  return [...latest.values()];
}

/** A new commit on top of `parent` that no branch points at; its hash. */
async function commitOn(repo: TestRepo, parent: string, message: string): Promise<string> {
  return repo.git('commit-tree', `${parent}^{tree}`, '-p', parent, '-m', `${message} ${randomBytes(4).toString('hex')}`);
}

/** A made-up commit hash. */
function sha(): string {
  return randomBytes(20).toString('hex');
}
