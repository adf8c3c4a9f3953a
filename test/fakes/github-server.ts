import { createHash, createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { components } from '@octokit/openapi-types';
import { gitReader, type GitCommit, type GitReader } from './github-git.ts';
import { listenForTests, readBody } from './http.ts';

/**
 * A fake of GitHub's REST API on node:http, for octokit pointed at it with `baseUrl`. Repositories are real git
 * repositories on disk that the test makes and registers; everything else (pull requests, organisations, teams,
 * statuses, check runs, comments, installations) lives in memory. Responses have GitHub's shapes (typed by
 * @octokit/openapi-types), ETags with 304s that cost no rate limit, `Link` pagination, rate-limit headers, and
 * real authentication: personal tokens the test names, and installation tokens issued for an App JWT that is
 * verified against the App's public key. One rate-limit bucket is shared by every caller.
 */

type Schemas = components['schemas'];
type FakeUser = Schemas['simple-user'];
type FakeRepository = Pick<Schemas['repository'], 'id' | 'node_id' | 'name' | 'full_name' | 'private' | 'owner' | 'html_url' | 'description' | 'fork' | 'url' | 'default_branch' | 'visibility'>;
type PullRequestSide = { label: string; ref: string; sha: string; user: FakeUser | null; repo: FakeRepository | null };
type FakePullRequestJson = Pick<Schemas['pull-request'], 'url' | 'id' | 'node_id' | 'html_url' | 'number' | 'state' | 'locked' | 'title' | 'user' | 'body' | 'created_at' | 'updated_at' | 'closed_at' | 'merged_at' | 'merge_commit_sha' | 'draft'> & {
  head: PullRequestSide;
  base: PullRequestSide;
};
/** A check run as stored, with the repository it belongs to. */
export type FakeCheckRun = Schemas['check-run'] & { repo: string };
/** A commit status as stored, with its repository and commit. */
export type FakeStatus = Schemas['status'] & { repo: string; sha: string };
/** A comment as stored. */
export interface FakeComment {
  repo: string;
  number: number;
  body: string;
  author: string;
}

export interface FakeGitHubOptions {
  /** Personal access tokens the fake accepts: token -> the login it acts as. */
  tokens?: Record<string, string>;
  /** A GitHub App: its JWTs must be RS256-signed by the key matching `publicKey`; `installations` maps account -> id. */
  app?: { id: number; publicKey: KeyObject | string; installations: Record<string, number> };
  /** Requests per hour (default 5000, GitHub's for a token). */
  rateLimit?: number;
  /** ms since the epoch; injectable so tests can expire tokens and JWTs. */
  now?: () => number;
}

export interface FakePullRequestInput {
  /** "owner/name" of the base repository. */
  repo: string;
  /** The base branch. */
  base: string;
  /** Where the head is: a branch of `repo` itself or of a fork (another registered repository). */
  head: { repo?: string; ref: string };
  author: string;
  title?: string;
  state?: 'open' | 'closed';
}

/** A running fake. */
export interface FakeGitHub {
  /** `http://127.0.0.1:PORT`: octokit's `baseUrl`. */
  url: string;
  /** Serves the git repository at `path` (a work tree or bare) as "owner/name". */
  addRepo(fullName: string, path: string): void;
  /** Stops serving a repository, as when a fork is deleted: pull requests from it then have `head.repo: null`. */
  removeRepo(fullName: string): void;
  /** Opens a pull request from the head branch's current commit, made reachable in the base as `refs/pull/N/head`; returns N. */
  addPullRequest(input: FakePullRequestInput): Promise<number>;
  /** A push to a pull request's head branch: its head (and refs/pull/N/head) move to the branch's commit now. */
  syncPullRequest(repo: string, number: number): Promise<string>;
  setOrgMembers(org: string, logins: readonly string[]): void;
  setTeamMembers(org: string, team: string, members: Record<string, 'active' | 'pending'>): void;
  /** Sets how many requests are left in this hour; at 0 every request is refused as GitHub does. */
  setRateLimitRemaining(remaining: number): void;
  /** The bucket now: limit, remaining, and the reset in epoch seconds. */
  rateLimit(): { limit: number; remaining: number; reset: number };
  /** The next `count` authenticated requests are refused as a secondary rate limit, with `retry-after`. */
  secondaryRateLimit(retryAfterSeconds: number, options?: { count?: number; status?: 403 | 429 }): void;
  statuses: FakeStatus[];
  checkRuns: FakeCheckRun[];
  comments: FakeComment[];
  /** Every request served, in order. */
  requests: { method: string; path: string; status: number }[];
  close(): Promise<void>;
}

class GitHubFailure extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

interface Reply {
  status: number;
  body?: unknown;
  /** A body sent as is, with this content type, instead of JSON. */
  raw?: { data: Buffer | string; contentType: string };
  headers?: Record<string, string>;
}

type Caller = { kind: 'user'; login: string } | { kind: 'installation'; id: number; account: string } | { kind: 'app' };

interface StoredRepo {
  id: number;
  owner: string;
  name: string;
  reader: GitReader;
}

interface StoredPullRequest {
  number: number;
  repo: string;
  base: string;
  baseSha: string;
  headRepo: string;
  headRef: string;
  headSha: string;
  author: string;
  title: string;
  state: 'open' | 'closed';
  createdAt: string;
}

interface Route {
  method: string;
  pattern: RegExp;
  /** Whether the App's own JWT (not an installation token) may call it; no other route accepts one. */
  appJwt?: boolean;
  handle(match: string[], request: Incoming): Promise<Reply>;
}

interface Incoming {
  req: IncomingMessage;
  url: URL;
  caller: Caller;
  body: Record<string, unknown>;
}

const DOCS = 'https://docs.github.com/rest';
const WINDOW_S = 3600;
const MAX_PER_PAGE = 100;
const COMPARE_UNPAGED_COMMITS = 250;
const COMPARE_MAX_FILES = 300;
const JWT_MAX_LIFETIME_S = 600;
const CLOCK_SKEW_S = 60;
const STATUS_STATES = new Set(['error', 'failure', 'pending', 'success']);
const CHECK_STATUSES = new Set(['queued', 'in_progress', 'completed', 'waiting', 'requested', 'pending']);
const CONCLUSIONS = new Set(['success', 'failure', 'neutral', 'cancelled', 'skipped', 'timed_out', 'action_required']);

/** Starts the fake on a free port of 127.0.0.1. */
export async function startFakeGitHub(options: FakeGitHubOptions = {}): Promise<FakeGitHub> {
  const now = options.now ?? Date.now;
  const nowSeconds = (): number => Math.floor(now() / 1000);
  const tokens = new Map(Object.entries(options.tokens ?? {}));
  const appKey = options.app === undefined ? undefined : typeof options.app.publicKey === 'string' ? createPublicKey(options.app.publicKey) : options.app.publicKey;
  const installations = new Map(Object.entries(options.app?.installations ?? {}).map(([account, id]) => [id, account]));
  const installationTokens = new Map<string, { id: number; account: string; expiresAt: number }>();
  const downloads = new Map<string, { repo: StoredRepo; sha: string }>();
  const repos = new Map<string, StoredRepo>();
  const pulls = new Map<string, StoredPullRequest[]>();
  const orgs = new Map<string, Set<string>>();
  const teams = new Map<string, Map<string, 'active' | 'pending'>>();
  const statuses: FakeStatus[] = [];
  const checkRuns: FakeCheckRun[] = [];
  const comments: FakeComment[] = [];
  const requests: FakeGitHub['requests'] = [];
  const limit = options.rateLimit ?? 5000;
  let remaining = limit;
  let reset = nowSeconds() + WINDOW_S;
  let secondary: { retryAfter: number; count: number; status: number } | undefined;
  let nextId = 1000;
  let origin = '';

  // ---------------------------------------------------------------- JSON of GitHub's resources

  const user = (login: string): FakeUser => {
    const url = `${origin}/users/${login}`;
    return {
      login,
      id: idOf(login),
      node_id: nodeId('U', login),
      avatar_url: `${origin}/avatars/${login}`,
      gravatar_id: '',
      url,
      html_url: `${origin}/${login}`,
      followers_url: `${url}/followers`,
      following_url: `${url}/following{/other_user}`,
      gists_url: `${url}/gists{/gist_id}`,
      starred_url: `${url}/starred{/owner}{/repo}`,
      subscriptions_url: `${url}/subscriptions`,
      organizations_url: `${url}/orgs`,
      repos_url: `${url}/repos`,
      events_url: `${url}/events{/privacy}`,
      received_events_url: `${url}/received_events`,
      type: orgs.has(login) ? 'Organization' : 'User',
      site_admin: false,
    };
  };

  const repository = (fullName: string): FakeRepository | null => {
    const repo = repos.get(fullName);
    if (repo === undefined) return null;
    return {
      id: repo.id,
      node_id: nodeId('R', fullName),
      name: repo.name,
      full_name: fullName,
      private: false,
      owner: user(repo.owner),
      html_url: `${origin}/${fullName}`,
      description: null,
      fork: [...pulls.values()].flat().some((pull) => pull.headRepo === fullName && pull.repo !== fullName),
      url: `${origin}/repos/${fullName}`,
      default_branch: 'main',
      visibility: 'public',
    };
  };

  const commitJson = (fullName: string, commit: GitCommit): Schemas['commit'] => {
    const api = `${origin}/repos/${fullName}`;
    return {
      url: `${api}/commits/${commit.sha}`,
      sha: commit.sha,
      node_id: nodeId('C', commit.sha),
      html_url: `${origin}/${fullName}/commit/${commit.sha}`,
      comments_url: `${api}/commits/${commit.sha}/comments`,
      commit: {
        url: `${api}/git/commits/${commit.sha}`,
        author: commit.author,
        committer: commit.committer,
        message: commit.message,
        comment_count: 0,
        tree: { sha: commit.tree, url: `${api}/git/trees/${commit.tree}` },
        verification: { verified: false, reason: 'unsigned', payload: null, signature: null, verified_at: null },
      },
      // Commit identities are e-mail addresses that match no account here.
      author: null,
      committer: null,
      parents: commit.parents.map((sha) => ({ sha, url: `${api}/commits/${sha}`, html_url: `${origin}/${fullName}/commit/${sha}` })),
    };
  };

  const filesJson = async (fullName: string, repo: StoredRepo, base: string, head: string): Promise<Schemas['diff-entry'][]> =>
    (await repo.reader.diff(base, head)).slice(0, COMPARE_MAX_FILES).map((change) => ({
      sha: change.blob,
      filename: change.filename,
      status: change.status,
      // Line counts are not worked out here; nothing the adapters read depends on them.
      additions: 0,
      deletions: 0,
      changes: 0,
      blob_url: `${origin}/${fullName}/blob/${head}/${change.filename}`,
      raw_url: `${origin}/${fullName}/raw/${head}/${change.filename}`,
      contents_url: `${origin}/repos/${fullName}/contents/${change.filename}?ref=${head}`,
      ...(change.previousFilename === undefined ? {} : { previous_filename: change.previousFilename }),
    }));

  const pullJson = (pull: StoredPullRequest): FakePullRequestJson => {
    const side = (fullName: string, ref: string, sha: string): PullRequestSide => {
      const owner = fullName.split('/')[0] ?? '';
      return { label: `${owner}:${ref}`, ref, sha, user: user(owner), repo: repository(fullName) };
    };
    return {
      url: `${origin}/repos/${pull.repo}/pulls/${pull.number}`,
      id: idOf(`${pull.repo}#${pull.number}`),
      node_id: nodeId('PR', `${pull.repo}#${pull.number}`),
      html_url: `${origin}/${pull.repo}/pull/${pull.number}`,
      number: pull.number,
      state: pull.state,
      locked: false,
      title: pull.title,
      user: user(pull.author),
      body: null,
      created_at: pull.createdAt,
      updated_at: pull.createdAt,
      closed_at: pull.state === 'closed' ? pull.createdAt : null,
      merged_at: null,
      merge_commit_sha: null,
      draft: false,
      head: side(pull.headRepo, pull.headRef, pull.headSha),
      base: side(pull.repo, pull.base, pull.baseSha),
    };
  };

  const installationJson = (id: number, account: string): Schemas['installation'] => ({
    id,
    account: user(account),
    repository_selection: 'all',
    access_tokens_url: `${origin}/app/installations/${id}/access_tokens`,
    repositories_url: `${origin}/installation/repositories`,
    html_url: `${origin}/organizations/${account}/settings/installations/${id}`,
    app_id: options.app?.id ?? 0,
    target_id: idOf(account),
    target_type: orgs.has(account) ? 'Organization' : 'User',
    permissions: { checks: 'write', statuses: 'write', contents: 'read', pull_requests: 'write', issues: 'write', members: 'read' },
    events: [],
    created_at: isoNow(now),
    updated_at: isoNow(now),
    single_file_name: null,
    app_slug: 'hermetic-test',
    suspended_by: null,
    suspended_at: null,
  });

  const appJson = (): NonNullable<Schemas['nullable-integration']> => ({
    id: options.app?.id ?? 0,
    slug: 'hermetic-test',
    node_id: nodeId('A', String(options.app?.id ?? 0)),
    owner: user('hermetic'),
    name: 'hermetic-test',
    description: null,
    external_url: origin,
    html_url: `${origin}/apps/hermetic-test`,
    created_at: '2024-01-01T00:00:00Z',
    updated_at: '2024-01-01T00:00:00Z',
    permissions: { checks: 'write', statuses: 'write' },
    events: [],
  });

  // ---------------------------------------------------------------- lookups that answer like GitHub

  const repoOf = (owner: string, name: string, caller: Caller): StoredRepo => {
    const repo = repos.get(`${owner}/${name}`);
    // An installation sees only its own account's repositories; GitHub hides the rest as 404 too.
    if (repo === undefined || (caller.kind === 'installation' && caller.account !== owner)) throw new GitHubFailure(404, 'Not Found');
    return repo;
  };

  const commitOf = async (repo: StoredRepo, ref: string): Promise<string> => {
    const sha = await repo.reader.resolve(ref);
    if (sha === undefined) throw new GitHubFailure(422, `No commit found for SHA: ${ref}`);
    return sha;
  };

  const oneCommit = async (repo: StoredRepo, sha: string): Promise<GitCommit> => {
    const [commit] = await repo.reader.commits('--no-walk', sha);
    if (commit === undefined) throw new GitHubFailure(422, `No commit found for SHA: ${sha}`);
    return commit;
  };

  const pullOf = (fullName: string, number: string): StoredPullRequest => {
    const pull = pulls.get(fullName)?.find((candidate) => String(candidate.number) === number);
    if (pull === undefined) throw new GitHubFailure(404, 'Not Found');
    return pull;
  };

  const requireApp = (caller: Caller, what: string): void => {
    if (caller.kind !== 'installation') throw new GitHubFailure(403, `You must authenticate via a GitHub App to ${what}.`);
  };

  // ---------------------------------------------------------------- routes

  const routes: Route[] = [
    {
      method: 'POST',
      pattern: /^\/app\/installations\/(\d+)\/access_tokens$/,
      appJwt: true,
      async handle([id]) {
        const account = installations.get(Number(id));
        if (account === undefined) throw new GitHubFailure(404, 'Not Found');
        const token = `ghs_${randomBytes(18).toString('hex')}`;
        const expiresAt = now() + WINDOW_S * 1000;
        installationTokens.set(token, { id: Number(id), account, expiresAt });
        const body: Schemas['installation-token'] = { token, expires_at: new Date(expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'), permissions: installationJson(Number(id), account).permissions, repository_selection: 'all' };
        return { status: 201, body };
      },
    },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/installation$/,
      appJwt: true,
      async handle([owner = '', name = '']) {
        const id = options.app?.installations[owner];
        if (id === undefined || !repos.has(`${owner}/${name}`)) throw new GitHubFailure(404, 'Not Found');
        return { status: 200, body: installationJson(id, owner) };
      },
    },
    {
      method: 'GET',
      pattern: /^\/orgs\/([^/]+)\/installation$/,
      appJwt: true,
      async handle([org = '']) {
        const id = options.app?.installations[org];
        if (id === undefined) throw new GitHubFailure(404, 'Not Found');
        return { status: 200, body: installationJson(id, org) };
      },
    },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/commits$/,
      async handle([owner = '', name = ''], { url, caller }) {
        const repo = repoOf(owner, name, caller);
        const sha = await commitOf(repo, url.searchParams.get('sha') ?? 'HEAD');
        const all = await repo.reader.commits(sha);
        const { items, link } = paginate(url, all);
        return { status: 200, body: items.map((commit) => commitJson(`${owner}/${name}`, commit)), headers: link };
      },
    },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/commits\/([^/]+)\/check-runs$/,
      async handle([owner = '', name = '', ref = ''], { url, caller }) {
        const repo = repoOf(owner, name, caller);
        const sha = await commitOf(repo, ref);
        const wanted = url.searchParams.get('check_name');
        const all = checkRuns.filter((run) => run.repo === `${owner}/${name}` && run.head_sha === sha && (wanted === null || run.name === wanted));
        // filter=latest, the default: the most recent run of each name.
        const latest = url.searchParams.get('filter') === 'all' ? all : all.filter((run) => !all.some((other) => other.name === run.name && other.id > run.id));
        const { items, link } = paginate(url, [...latest].reverse());
        return { status: 200, body: { total_count: latest.length, check_runs: items.map(withoutRepo) }, headers: link };
      },
    },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/commits\/([^/]+)\/status$/,
      async handle([owner = '', name = '', ref = ''], { url, caller }) {
        const fullName = `${owner}/${name}`;
        const repo = repoOf(owner, name, caller);
        const sha = await commitOf(repo, ref);
        // The latest status of each context, newest first.
        const latest = statuses.filter((status) => status.repo === fullName && status.sha === sha && !statuses.some((other) => other.repo === fullName && other.sha === sha && other.context === status.context && other.id > status.id)).reverse();
        const states = new Set(latest.map((status) => status.state));
        const state = states.has('error') || states.has('failure') ? 'failure' : latest.length === 0 || states.has('pending') ? 'pending' : 'success';
        const { items, link } = paginate(url, latest);
        const body: Omit<Schemas['combined-commit-status'], 'repository'> & { repository: FakeRepository | null } = {
          state,
          statuses: items.map(({ repo: _repo, sha: _sha, creator: _creator, ...status }) => status),
          sha,
          total_count: latest.length,
          repository: repository(fullName),
          commit_url: `${origin}/repos/${fullName}/commits/${sha}`,
          url: `${origin}/repos/${fullName}/commits/${sha}/status`,
        };
        return { status: 200, body, headers: link };
      },
    },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/commits\/([^/]+)$/,
      async handle([owner = '', name = '', ref = ''], { req, caller }) {
        const repo = repoOf(owner, name, caller);
        const sha = await commitOf(repo, ref);
        if ((req.headers.accept ?? '').includes('application/vnd.github.sha')) {
          return { status: 200, raw: { data: sha, contentType: 'application/vnd.github.sha; charset=utf-8' } };
        }
        const commit = await oneCommit(repo, sha);
        const parent = commit.parents[0] ?? EMPTY_TREE;
        const files = await filesJson(`${owner}/${name}`, repo, parent, sha);
        return { status: 200, body: { ...commitJson(`${owner}/${name}`, commit), stats: { additions: 0, deletions: 0, total: 0 }, files } satisfies Schemas['commit'] };
      },
    },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/compare\/(.+)$/,
      async handle([owner = '', name = '', basehead = ''], { url, caller }) {
        const fullName = `${owner}/${name}`;
        const repo = repoOf(owner, name, caller);
        const [baseRef, headRef, extra] = basehead.split('...');
        if (baseRef === undefined || headRef === undefined || extra !== undefined) throw new GitHubFailure(404, 'Not Found');
        const [base, head] = await Promise.all([repo.reader.resolve(baseRef), repo.reader.resolve(headRef)]);
        if (base === undefined || head === undefined) throw new GitHubFailure(404, 'Not Found');
        const mergeBase = await repo.reader.mergeBase(base, head);
        if (mergeBase === undefined) throw new GitHubFailure(404, `No common ancestor between ${baseRef} and ${headRef}.`);
        const [aheadBy, behindBy] = await Promise.all([repo.reader.count(head, `^${base}`), repo.reader.count(base, `^${head}`)]);
        const status = aheadBy === 0 && behindBy === 0 ? 'identical' : behindBy === 0 ? 'ahead' : aheadBy === 0 ? 'behind' : 'diverged';
        const all = await repo.reader.commits('--reverse', head, `^${base}`);
        const paged = url.searchParams.has('per_page') || url.searchParams.has('page');
        // Unpaged, GitHub sends the newest 250; paged, the files come with the first page only.
        const { items, link, page } = paged ? paginate(url, all) : { items: all.slice(-COMPARE_UNPAGED_COMMITS), link: {}, page: 1 };
        const body: Schemas['commit-comparison'] = {
          url: `${origin}/repos/${fullName}/compare/${basehead}`,
          html_url: `${origin}/${fullName}/compare/${basehead}`,
          permalink_url: `${origin}/${fullName}/compare/${owner}:${base}...${owner}:${head}`,
          diff_url: `${origin}/${fullName}/compare/${basehead}.diff`,
          patch_url: `${origin}/${fullName}/compare/${basehead}.patch`,
          base_commit: commitJson(fullName, await oneCommit(repo, base)),
          merge_base_commit: commitJson(fullName, await oneCommit(repo, mergeBase)),
          status,
          ahead_by: aheadBy,
          behind_by: behindBy,
          total_commits: aheadBy,
          commits: items.map((commit) => commitJson(fullName, commit)),
          ...(page === 1 ? { files: await filesJson(fullName, repo, mergeBase, head) } : {}),
        };
        return { status: 200, body, headers: link };
      },
    },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/git\/trees\/([^/]+)$/,
      async handle([owner = '', name = '', treeish = ''], { url, caller }) {
        const repo = repoOf(owner, name, caller);
        const sha = (await repo.reader.git('rev-parse', '--verify', '--quiet', '--end-of-options', `${treeish}^{tree}`).catch(() => '')).trim();
        if (sha === '') throw new GitHubFailure(404, 'Not Found');
        const api = `${origin}/repos/${owner}/${name}/git`;
        const entries = await repo.reader.tree(sha);
        const recursive = url.searchParams.has('recursive');
        const body: Schemas['git-tree'] = {
          sha,
          url: `${api}/trees/${sha}`,
          truncated: false,
          tree: entries
            .filter((entry) => recursive || !entry.path.includes('/'))
            .map((entry) => ({ path: entry.path, mode: entry.mode, type: entry.type, sha: entry.sha, url: `${api}/${entry.type === 'tree' ? 'trees' : 'blobs'}/${entry.sha}` })),
        };
        return { status: 200, body };
      },
    },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/tarball(?:\/(.+))?$/,
      async handle([owner = '', name = '', ref = 'HEAD'], { caller }) {
        const repo = repoOf(owner, name, caller);
        const sha = await repo.reader.resolve(ref);
        if (sha === undefined) throw new GitHubFailure(404, 'Not Found');
        // Like GitHub: a redirect to codeload, carrying a short-lived token of its own.
        const token = randomBytes(12).toString('hex');
        downloads.set(token, { repo, sha });
        return { status: 302, headers: { location: `${origin}/_codeload/${owner}/${name}/legacy.tar.gz/${sha}?token=${token}` } };
      },
    },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/pulls$/,
      async handle([owner = '', name = ''], { url, caller }) {
        repoOf(owner, name, caller);
        const state = url.searchParams.get('state') ?? 'open';
        const chosen = (pulls.get(`${owner}/${name}`) ?? []).filter((pull) => state === 'all' || pull.state === state);
        const newestFirst = url.searchParams.get('direction') !== 'asc';
        const ordered = [...chosen].sort((a, b) => (newestFirst ? b.number - a.number : a.number - b.number));
        const { items, link } = paginate(url, ordered);
        return { status: 200, body: items.map(pullJson), headers: link };
      },
    },
    {
      method: 'GET',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/pulls\/(\d+)$/,
      async handle([owner = '', name = '', number = ''], { caller }) {
        repoOf(owner, name, caller);
        return { status: 200, body: pullJson(pullOf(`${owner}/${name}`, number)) };
      },
    },
    {
      method: 'POST',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)\/comments$/,
      async handle([owner = '', name = '', number = ''], { caller, body }) {
        repoOf(owner, name, caller);
        pullOf(`${owner}/${name}`, number);
        if (typeof body.body !== 'string' || body.body === '') throw new GitHubFailure(422, 'Validation Failed');
        const author = caller.kind === 'user' ? caller.login : 'hermetic-test[bot]';
        comments.push({ repo: `${owner}/${name}`, number: Number(number), body: body.body, author });
        const id = nextId++;
        const reply: Pick<Schemas['issue-comment'], 'id' | 'node_id' | 'url' | 'html_url' | 'body' | 'user' | 'created_at' | 'updated_at' | 'issue_url' | 'author_association'> = {
          id,
          node_id: nodeId('IC', String(id)),
          url: `${origin}/repos/${owner}/${name}/issues/comments/${id}`,
          html_url: `${origin}/${owner}/${name}/pull/${number}#issuecomment-${id}`,
          body: body.body,
          user: user(author),
          created_at: isoNow(now),
          updated_at: isoNow(now),
          issue_url: `${origin}/repos/${owner}/${name}/issues/${number}`,
          author_association: 'NONE',
        };
        return { status: 201, body: reply };
      },
    },
    {
      method: 'POST',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/statuses\/([0-9a-f]{40})$/,
      async handle([owner = '', name = '', sha = ''], { caller, body }) {
        const repo = repoOf(owner, name, caller);
        await commitOf(repo, sha);
        const state = body.state;
        const description = body.description;
        if (typeof state !== 'string' || !STATUS_STATES.has(state)) throw new GitHubFailure(422, 'Validation Failed: state is not included in the list');
        // Counted in characters, as GitHub (Ruby) counts them.
        if (typeof description === 'string' && [...description].length > 140) throw new GitHubFailure(422, 'Validation Failed: description is too long (maximum is 140 characters)');
        const id = nextId++;
        const status: FakeStatus = {
          repo: `${owner}/${name}`,
          sha,
          url: `${origin}/repos/${owner}/${name}/statuses/${sha}`,
          avatar_url: null,
          id,
          node_id: nodeId('S', String(id)),
          state,
          description: typeof description === 'string' ? description : null,
          target_url: typeof body.target_url === 'string' ? body.target_url : null,
          context: typeof body.context === 'string' ? body.context : 'default',
          created_at: isoNow(now),
          updated_at: isoNow(now),
          creator: caller.kind === 'user' ? user(caller.login) : null,
        };
        statuses.push(status);
        const { repo: _repo, sha: _sha, ...reply } = status;
        return { status: 201, body: reply };
      },
    },
    {
      method: 'POST',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/check-runs$/,
      async handle([owner = '', name = ''], { caller, body }) {
        requireApp(caller, 'create a check run');
        const repo = repoOf(owner, name, caller);
        if (typeof body.name !== 'string' || typeof body.head_sha !== 'string') throw new GitHubFailure(422, 'Validation Failed: name and head_sha are required');
        const sha = await commitOf(repo, body.head_sha);
        const id = nextId++;
        const run: FakeCheckRun = {
          repo: `${owner}/${name}`,
          id,
          head_sha: sha,
          node_id: nodeId('CR', String(id)),
          external_id: null,
          url: `${origin}/repos/${owner}/${name}/check-runs/${id}`,
          html_url: `${origin}/${owner}/${name}/runs/${id}`,
          details_url: null,
          status: 'queued',
          conclusion: null,
          started_at: isoNow(now),
          completed_at: null,
          output: { title: null, summary: null, text: null, annotations_count: 0, annotations_url: `${origin}/repos/${owner}/${name}/check-runs/${id}/annotations` },
          name: body.name,
          check_suite: { id: idOf(`${owner}/${name}@${sha}`) },
          app: appJson(),
          pull_requests: [],
        };
        applyCheckRun(run, body, now);
        checkRuns.push(run);
        return { status: 201, body: withoutRepo(run) };
      },
    },
    {
      method: 'PATCH',
      pattern: /^\/repos\/([^/]+)\/([^/]+)\/check-runs\/(\d+)$/,
      async handle([owner = '', name = '', id = ''], { caller, body }) {
        requireApp(caller, 'update a check run');
        repoOf(owner, name, caller);
        const run = checkRuns.find((candidate) => candidate.repo === `${owner}/${name}` && String(candidate.id) === id);
        if (run === undefined) throw new GitHubFailure(404, 'Not Found');
        applyCheckRun(run, body, now);
        return { status: 200, body: withoutRepo(run) };
      },
    },
    {
      method: 'GET',
      pattern: /^\/orgs\/([^/]+)\/members\/([^/]+)$/,
      async handle([org = '', login = ''], { caller }) {
        const members = orgs.get(org);
        if (members === undefined) throw new GitHubFailure(404, 'Not Found');
        const insider = caller.kind === 'installation' ? caller.account === org : caller.kind === 'user' && members.has(caller.login);
        // A requester outside the organisation is sent to the public membership check, as on GitHub.
        if (!insider) return { status: 302, headers: { location: `${origin}/orgs/${org}/public_members/${login}` } };
        if (!members.has(login)) throw new GitHubFailure(404, 'User does not exist or is not a member of the organization');
        return { status: 204 };
      },
    },
    {
      method: 'GET',
      pattern: /^\/orgs\/([^/]+)\/teams\/([^/]+)\/memberships\/([^/]+)$/,
      async handle([org = '', team = '', login = '']) {
        const state = teams.get(`${org}/${team}`)?.get(login);
        if (state === undefined) throw new GitHubFailure(404, 'Not Found');
        const body: Schemas['team-membership'] = { url: `${origin}/organizations/${idOf(org)}/team/${idOf(team)}/memberships/${login}`, role: 'member', state };
        return { status: 200, body };
      },
    },
  ];

  // ---------------------------------------------------------------- authentication and rate limits

  const authenticate = (req: IncomingMessage, route: Route): Caller => {
    const header = req.headers.authorization ?? '';
    const match = /^(?:token|bearer)\s+(\S+)$/i.exec(header);
    if (match === null) throw new GitHubFailure(401, 'Requires authentication');
    const credential = match[1] ?? '';
    const login = tokens.get(credential);
    if (login !== undefined) return { kind: 'user', login };
    const installation = installationTokens.get(credential);
    if (installation !== undefined) {
      if (installation.expiresAt <= now()) throw new GitHubFailure(401, 'Bad credentials');
      return { kind: 'installation', id: installation.id, account: installation.account };
    }
    if (credential.split('.').length === 3 && appKey !== undefined) {
      verifyAppJwt(credential, appKey, options.app?.id ?? 0, nowSeconds());
      if (route.appJwt !== true) throw new GitHubFailure(403, 'A JSON web token cannot be used to call this endpoint; use an installation token');
      return { kind: 'app' };
    }
    throw new GitHubFailure(401, 'Bad credentials');
  };

  /** A new hour's window starts full, as GitHub's does. */
  const refill = (): void => {
    if (nowSeconds() < reset) return;
    remaining = limit;
    reset = nowSeconds() + WINDOW_S;
  };

  const spend = (): void => {
    refill();
    remaining = Math.max(0, remaining - 1);
  };

  const rateHeaders = (): Record<string, string> => ({
    'x-ratelimit-limit': String(limit),
    'x-ratelimit-remaining': String(remaining),
    'x-ratelimit-reset': String(reset),
    'x-ratelimit-used': String(limit - remaining),
    'x-ratelimit-resource': 'core',
  });

  const admit = (caller: Caller): void => {
    if (secondary !== undefined && secondary.count > 0) {
      secondary.count -= 1;
      const retryAfter = String(secondary.retryAfter);
      const status = secondary.status;
      if (secondary.count === 0) secondary = undefined;
      throw new GitHubFailure(status, 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.', { 'retry-after': retryAfter });
    }
    refill();
    if (remaining === 0) {
      const who = caller.kind === 'user' ? `user ID ${idOf(caller.login)}` : caller.kind === 'installation' ? `installation ID ${caller.id}` : 'this app';
      throw new GitHubFailure(403, `API rate limit exceeded for ${who}.`);
    }
  };

  // ---------------------------------------------------------------- the server

  const serve = async (req: IncomingMessage, url: URL): Promise<Reply> => {
    const method = req.method ?? 'GET';
    const download = /^\/_codeload\/[^/]+\/[^/]+\/legacy\.tar\.gz\/([0-9a-f]{40})$/.exec(url.pathname);
    if (download !== null && method === 'GET') {
      const granted = downloads.get(url.searchParams.get('token') ?? '');
      if (granted === undefined || granted.sha !== download[1]) throw new GitHubFailure(404, 'Not Found');
      const prefix = `${granted.repo.owner}-${granted.repo.name}-${granted.sha.slice(0, 7)}`;
      const data = await granted.repo.reader.archive(granted.sha, prefix);
      return { status: 200, raw: { data, contentType: 'application/x-gzip' }, headers: { 'content-disposition': `attachment; filename=${prefix}.tar.gz` } };
    }
    for (const route of routes) {
      const match = route.pattern.exec(url.pathname);
      if (match === null || route.method !== method) continue;
      const caller = authenticate(req, route);
      admit(caller);
      const text = await readBody(req);
      const body = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
      const reply = await route.handle(match.slice(1).map((part) => (part === undefined ? part : decodeURIComponent(part))) as string[], { req, url, caller, body });
      return conditional(req, reply);
    }
    throw new GitHubFailure(404, 'Not Found');
  };

  /** Tags a 200 GET with an ETag, and answers 304 without spending the rate limit when the client has it. */
  const conditional = (req: IncomingMessage, reply: Reply): Reply => {
    if (req.method !== 'GET' || reply.status !== 200) {
      spend();
      return reply;
    }
    const content = reply.raw?.data ?? JSON.stringify(reply.body);
    const etag = `W/"${createHash('sha256').update(`${req.headers.accept ?? ''}\n${req.headers.authorization ?? ''}\n`).update(content).digest('hex').slice(0, 32)}"`;
    const presented = (req.headers['if-none-match'] ?? '').split(',').map((tag) => tag.trim());
    if (presented.includes(etag)) return { status: 304, headers: { etag } };
    spend();
    return { ...reply, headers: { ...reply.headers, etag } };
  };

  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', origin);
      let reply: Reply;
      try {
        reply = await serve(req, url);
      } catch (error) {
        const failure = error instanceof GitHubFailure ? error : new GitHubFailure(500, `fake GitHub: ${error instanceof Error ? error.message : String(error)}`);
        if (failure.status === 403 || failure.status === 422 || failure.status === 404) spend();
        reply = { status: failure.status, body: { message: failure.message, documentation_url: DOCS, status: String(failure.status) }, headers: failure.headers };
        req.resume();
      }
      requests.push({ method: req.method ?? 'GET', path: url.pathname, status: reply.status });
      send(res, reply, url.pathname.startsWith('/_codeload/') ? {} : rateHeaders());
    })();
  });
  await listenForTests(server);
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('fake GitHub did not get a port');
  origin = `http://127.0.0.1:${address.port}`;

  return {
    url: origin,
    addRepo(fullName, path) {
      const [owner, name, extra] = fullName.split('/');
      if (owner === undefined || name === undefined || extra !== undefined) throw new Error(`fake GitHub: ${fullName} is not "owner/name"`);
      repos.set(fullName, { id: idOf(fullName), owner, name, reader: gitReader(path) });
    },
    removeRepo(fullName) {
      repos.delete(fullName);
    },
    async addPullRequest(input) {
      const base = repos.get(input.repo);
      const headRepoName = input.head.repo ?? input.repo;
      const headRepo = repos.get(headRepoName);
      if (base === undefined || headRepo === undefined) throw new Error(`fake GitHub: no repository ${base === undefined ? input.repo : headRepoName}`);
      const [headSha, baseSha] = await Promise.all([headRepo.reader.resolve(`refs/heads/${input.head.ref}`), base.reader.resolve(`refs/heads/${input.base}`)]);
      if (headSha === undefined || baseSha === undefined) throw new Error(`fake GitHub: no branch ${headSha === undefined ? input.head.ref : input.base}`);
      const list = pulls.get(input.repo) ?? [];
      pulls.set(input.repo, list);
      const number = list.length + 1;
      // The head's commits become part of the base repository, as GitHub keeps them under refs/pull/N/head.
      const headPath = (await headRepo.reader.git('rev-parse', '--absolute-git-dir')).trim();
      await base.reader.git('fetch', '--quiet', '--no-tags', headPath, `+refs/heads/${input.head.ref}:refs/pull/${number}/head`);
      list.push({ number, repo: input.repo, base: input.base, baseSha, headRepo: headRepoName, headRef: input.head.ref, headSha, author: input.author, title: input.title ?? `pull request ${number}`, state: input.state ?? 'open', createdAt: isoNow(now) });
      return number;
    },
    async syncPullRequest(repo, number) {
      const pull = pulls.get(repo)?.find((candidate) => candidate.number === number);
      const base = repos.get(repo);
      const headRepo = pull === undefined ? undefined : repos.get(pull.headRepo);
      if (pull === undefined || base === undefined || headRepo === undefined) throw new Error(`fake GitHub: no pull request ${repo}#${number}`);
      const headSha = await headRepo.reader.resolve(`refs/heads/${pull.headRef}`);
      if (headSha === undefined) throw new Error(`fake GitHub: no branch ${pull.headRef}`);
      const headPath = (await headRepo.reader.git('rev-parse', '--absolute-git-dir')).trim();
      await base.reader.git('fetch', '--quiet', '--no-tags', headPath, `+refs/heads/${pull.headRef}:refs/pull/${number}/head`);
      pull.headSha = headSha;
      return headSha;
    },
    setOrgMembers(org, logins) {
      orgs.set(org, new Set(logins));
    },
    setTeamMembers(org, team, members) {
      teams.set(`${org}/${team}`, new Map(Object.entries(members)));
    },
    setRateLimitRemaining(count) {
      remaining = Math.max(0, Math.min(limit, count));
    },
    rateLimit: () => ({ limit, remaining, reset }),
    secondaryRateLimit(retryAfterSeconds, settings) {
      secondary = { retryAfter: retryAfterSeconds, count: settings?.count ?? 1, status: settings?.status ?? 403 };
    },
    statuses,
    checkRuns,
    comments,
    requests,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** git's empty tree: what a root commit's files are compared against. */
const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';

/** Checks an App JWT as GitHub does: RS256 by the App's key, `iss` the App's ID, at most ten minutes long, not expired. */
function verifyAppJwt(jwt: string, key: KeyObject, appId: number, nowSeconds: number): void {
  const [header = '', payload = '', signature = ''] = jwt.split('.');
  const refuse = (message: string): never => {
    throw new GitHubFailure(401, message);
  };
  let claims: { iss?: unknown; iat?: unknown; exp?: unknown };
  try {
    const head = JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as { alg?: unknown };
    if (head.alg !== 'RS256') refuse('A JSON web token could not be decoded');
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as typeof claims;
  } catch (error) {
    if (error instanceof GitHubFailure) throw error;
    return refuse('A JSON web token could not be decoded');
  }
  if (!verify('RSA-SHA256', Buffer.from(`${header}.${payload}`), key, Buffer.from(signature, 'base64url'))) refuse('A JSON web token could not be decoded');
  if (String(claims.iss) !== String(appId)) refuse("'Issuer' claim ('iss') must be the App's ID");
  if (typeof claims.exp !== 'number' || typeof claims.iat !== 'number') refuse("'Expiration time' claim ('exp') and 'Issued at' claim ('iat') are required");
  const { exp, iat } = claims as { exp: number; iat: number };
  if (exp <= nowSeconds) refuse("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires");
  if (iat > nowSeconds + CLOCK_SKEW_S) refuse("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued");
  if (exp - iat > JWT_MAX_LIFETIME_S + CLOCK_SKEW_S) refuse("'Expiration time' claim ('exp') is too far in the future");
}

/** Applies a create or update request's fields to a check run, refusing what GitHub refuses. */
function applyCheckRun(run: FakeCheckRun, body: Record<string, unknown>, now: () => number): void {
  const { status, conclusion } = body;
  if (status !== undefined && (typeof status !== 'string' || !CHECK_STATUSES.has(status))) throw new GitHubFailure(422, 'Validation Failed: status is not included in the list');
  if (conclusion !== undefined && (typeof conclusion !== 'string' || !CONCLUSIONS.has(conclusion))) throw new GitHubFailure(422, 'Validation Failed: conclusion is not included in the list');
  const nextStatus = (conclusion !== undefined && status === undefined ? 'completed' : (status ?? run.status)) as FakeCheckRun['status'];
  if (nextStatus === 'completed' && conclusion === undefined) throw new GitHubFailure(422, 'Validation Failed: conclusion is required when status is completed');
  run.status = nextStatus;
  run.conclusion = nextStatus === 'completed' ? (conclusion as FakeCheckRun['conclusion']) : null;
  run.completed_at = nextStatus === 'completed' ? isoNow(now) : null;
  if (typeof body.details_url === 'string') run.details_url = body.details_url;
  const output = body.output as { title?: unknown; summary?: unknown; text?: unknown } | undefined;
  if (output !== undefined) {
    if (typeof output.title !== 'string' || typeof output.summary !== 'string') throw new GitHubFailure(422, 'Validation Failed: output needs a title and a summary');
    run.output = { ...run.output, title: output.title, summary: output.summary, text: typeof output.text === 'string' ? output.text : null };
  }
}

function withoutRepo(run: FakeCheckRun): Schemas['check-run'] {
  const { repo: _repo, ...rest } = run;
  return rest;
}

/** One page of `items` as `per_page` (default 30, at most 100) and `page` ask, with GitHub's `Link` header. */
function paginate<T>(url: URL, items: readonly T[]): { items: T[]; link: Record<string, string>; page: number } {
  const perPage = Math.min(MAX_PER_PAGE, Math.max(1, Number.parseInt(url.searchParams.get('per_page') ?? '30', 10) || 30));
  const page = Math.max(1, Number.parseInt(url.searchParams.get('page') ?? '1', 10) || 1);
  const last = Math.max(1, Math.ceil(items.length / perPage));
  const at = (n: number): string => {
    const target = new URL(url);
    target.searchParams.set('page', String(n));
    return target.toString();
  };
  const links: string[] = [];
  if (page > 1) links.push(`<${at(page - 1)}>; rel="prev"`);
  if (page < last) links.push(`<${at(page + 1)}>; rel="next"`, `<${at(last)}>; rel="last"`);
  if (page > 1) links.push(`<${at(1)}>; rel="first"`);
  return { items: items.slice((page - 1) * perPage, page * perPage), link: links.length === 0 ? {} : { link: links.join(', ') }, page };
}

function send(res: ServerResponse, reply: Reply, rateHeaders: Record<string, string>): void {
  const headers: Record<string, string | number> = { ...rateHeaders, ...reply.headers };
  if (reply.status === 204 || reply.status === 304 || (reply.body === undefined && reply.raw === undefined)) {
    res.writeHead(reply.status, { ...headers, 'content-length': 0 });
    res.end();
    return;
  }
  const data = reply.raw?.data ?? JSON.stringify(reply.body);
  const contentType = reply.raw?.contentType ?? 'application/json; charset=utf-8';
  res.writeHead(reply.status, { ...headers, 'content-type': contentType, 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

/** A stable numeric ID for a name, as GitHub's IDs are stable. */
function idOf(name: string): number {
  return createHash('sha256').update(name).digest().readUInt32BE(0) & 0x7fffffff;
}

function nodeId(kind: string, name: string): string {
  return `${kind}_${createHash('sha256').update(name).digest('base64url').slice(0, 16)}`;
}

function isoNow(now: () => number): string {
  return new Date(now()).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
