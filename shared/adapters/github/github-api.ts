import type { Octokit } from 'octokit';
import { PermanentError } from '../../core/errors.ts';
import type { GitHubRepo } from '../../core/model/types.ts';
import type { BuilderStatus, EtagCache, GitHub, PullRequest } from '../../ports/github.ts';
import { requestStatus, type GitHubClient } from './client.ts';

export interface GitHubApiDeps {
  client: GitHubClient;
  /** Where the open pull requests' pages are remembered, so an unchanged list costs 304s and no rate limit. */
  etags: EtagCache;
}

/** What GitHub's pull request JSON (one, or one of a list) has that a PullRequest is made of. */
interface PullJson {
  number: number;
  state: string;
  title: string;
  html_url: string;
  user: { login: string } | null;
  head: { sha: string; ref: string; repo: { full_name: string } | null };
  base: { sha: string; ref: string; repo: { full_name: string } };
}

/** One remembered page of the open pull requests. */
interface CachedPage {
  etag: string;
  hasNext: boolean;
  pulls: PullRequest[];
}

const PER_PAGE = 100;
/** GitHub keeps at most this many characters of a commit status's description; a check run's title is cut alike. */
const MAX_DESCRIPTION = 140;
const STATUS_STATE = { queued: 'pending', running: 'pending', success: 'success', failure: 'failure', error: 'error' } as const;

/**
 * The GitHub port over the REST API: commit statuses under a token, check runs under a GitHub App, each written only
 * when what GitHub shows differs. What does not
 * exist (a pull request, an issue) throws PermanentError; rate limits and GitHub's failures throw RetryableError
 * (see createGitHubClient); a membership GitHub will not confirm is a no.
 */
export function createGitHubApi(deps: GitHubApiDeps): GitHub {
  const { client } = deps;

  async function openPullRequests(repo: GitHubRepo): Promise<PullRequest[]> {
    const octokit = await client.forRepo(repo);
    const key = `open-pulls:${repo.owner}/${repo.name}`;
    const known = ((await deps.etags.get(key))?.value as CachedPage[] | undefined) ?? [];
    const pages: CachedPage[] = [];
    // Each page is asked for on its own ETag: a change on a later page (a pull request closed, a head pushed)
    // leaves the first page as it was, so one tag for the list would miss it.
    for (let page = 1; page === 1 || pages[pages.length - 1]?.hasNext === true; page++) {
      const cached = known[page - 1];
      try {
        const response = await octokit.request('GET /repos/{owner}/{repo}/pulls', {
          owner: repo.owner,
          repo: repo.name,
          state: 'open',
          per_page: PER_PAGE,
          page,
          headers: cached === undefined ? {} : { 'if-none-match': cached.etag },
        });
        pages.push({ etag: response.headers.etag ?? '', hasNext: /rel="next"/.test(response.headers.link ?? ''), pulls: response.data.map(pullRequest) });
      } catch (error) {
        if (requestStatus(error) !== 304 || cached === undefined) throw error;
        pages.push(cached);
      }
    }
    await deps.etags.set(key, { etag: pages[0]?.etag ?? '', value: pages });
    return pages.flatMap((page) => page.pulls);
  }

  /**
   * Posts a commit status unless the one GitHub shows for its context already says the same: every post is kept in
   * the commit's history (up to 1000 per context) and sent to every webhook, so a repeat would not be idempotent.
   */
  async function setCommitStatus(octokit: Octokit, repo: GitHubRepo, status: BuilderStatus): Promise<void> {
    const state = STATUS_STATE[status.state];
    const description = cut(status.description, MAX_DESCRIPTION);
    const shown = await shownStatus(octokit, repo, status.sha, status.context);
    if (shown !== undefined && shown.state === state && shown.description === description && (shown.target_url ?? undefined) === status.targetUrl) return;
    await octokit.request('POST /repos/{owner}/{repo}/statuses/{sha}', {
      owner: repo.owner,
      repo: repo.name,
      sha: status.sha,
      state,
      context: status.context,
      description,
      ...(status.targetUrl === undefined ? {} : { target_url: status.targetUrl }),
    });
  }

  /** The latest status of `context` beside `sha`, from the pages of the commit's combined status. */
  async function shownStatus(octokit: Octokit, repo: GitHubRepo, sha: string, context: string) {
    for (let page = 1; ; page++) {
      const response = await octokit.request('GET /repos/{owner}/{repo}/commits/{ref}/status', { owner: repo.owner, repo: repo.name, ref: sha, per_page: PER_PAGE, page });
      const found = response.data.statuses.find((candidate) => candidate.context === context);
      if (found !== undefined || !/rel="next"/.test(response.headers.link ?? '')) return found;
    }
  }

  async function setCheckRun(octokit: Octokit, repo: GitHubRepo, status: BuilderStatus): Promise<void> {
    const wanted = checkRunFields(status);
    const { data } = await octokit.request('GET /repos/{owner}/{repo}/commits/{ref}/check-runs', { owner: repo.owner, repo: repo.name, ref: status.sha, check_name: status.context, filter: 'latest' });
    const existing = data.check_runs[0];
    if (existing === undefined) {
      await octokit.request('POST /repos/{owner}/{repo}/check-runs', { owner: repo.owner, repo: repo.name, name: status.context, head_sha: status.sha, ...wanted });
      return;
    }
    const same =
      existing.status === wanted.status &&
      (existing.conclusion ?? undefined) === wanted.conclusion &&
      (existing.details_url ?? undefined) === wanted.details_url &&
      existing.output.title === wanted.output.title &&
      existing.output.summary === wanted.output.summary;
    if (same) return;
    await octokit.request('PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}', { owner: repo.owner, repo: repo.name, check_run_id: existing.id, ...wanted });
  }

  return {
    async pullRequest(repo, number) {
      const octokit = await client.forRepo(repo);
      try {
        const { data } = await octokit.request('GET /repos/{owner}/{repo}/pulls/{pull_number}', { owner: repo.owner, repo: repo.name, pull_number: number });
        return pullRequest(data);
      } catch (error) {
        if (requestStatus(error) === 404) throw new PermanentError(`${repo.owner}/${repo.name} has no pull request ${number}`, { cause: error });
        throw error;
      }
    },

    openPullRequests,

    async isOrgMember(org, login) {
      const octokit = await client.forOrg(org);
      try {
        // 302 means GitHub will not say to these credentials (they are outside the organisation): a no, not the
        // public membership the redirect leads to.
        const response = await octokit.request('GET /orgs/{org}/members/{username}', { org, username: login, request: { redirect: 'manual' } });
        return (response.status as number) === 204;
      } catch (error) {
        if (requestStatus(error) === 404) return false;
        throw error;
      }
    },

    async isTeamMember(org, team, login) {
      const octokit = await client.forOrg(org);
      try {
        const { data } = await octokit.request('GET /orgs/{org}/teams/{team_slug}/memberships/{username}', { org, team_slug: team, username: login });
        return data.state === 'active';
      } catch (error) {
        if (requestStatus(error) === 404) return false;
        throw error;
      }
    },

    async setStatus(repo, status) {
      const octokit = await client.forRepo(repo);
      return client.auth === 'app' ? setCheckRun(octokit, repo, status) : setCommitStatus(octokit, repo, status);
    },

    async comment(repo, number, body) {
      const octokit = await client.forRepo(repo);
      try {
        await octokit.request('POST /repos/{owner}/{repo}/issues/{issue_number}/comments', { owner: repo.owner, repo: repo.name, issue_number: number, body });
      } catch (error) {
        if (requestStatus(error) === 404) throw new PermanentError(`${repo.owner}/${repo.name} has no issue or pull request ${number}`, { cause: error });
        throw error;
      }
    },
  };
}

/**
 * A builder status as a check run's fields. An error (the build could not run) completes as a failure: a neutral
 * conclusion would let a required check pass.
 */
function checkRunFields(status: BuilderStatus): {
  status: 'queued' | 'in_progress' | 'completed';
  conclusion?: 'success' | 'failure';
  details_url?: string;
  output: { title: string; summary: string };
} {
  const title = cut(status.description, MAX_DESCRIPTION);
  const output = { title, summary: title };
  const link = status.targetUrl === undefined ? {} : { details_url: status.targetUrl };
  switch (status.state) {
    case 'queued':
      return { status: 'queued', output, ...link };
    case 'running':
      return { status: 'in_progress', output, ...link };
    case 'success':
      return { status: 'completed', conclusion: 'success', output, ...link };
    case 'failure':
    case 'error':
      return { status: 'completed', conclusion: 'failure', output, ...link };
  }
}

function pullRequest(json: PullJson): PullRequest {
  // A deleted fork leaves the head without a repository.
  const headRepo = json.head.repo?.full_name;
  return {
    number: json.number,
    state: json.state === 'open' ? 'open' : 'closed',
    title: json.title,
    author: json.user?.login ?? '',
    head: { sha: json.head.sha, ref: json.head.ref, repo: headRepo ?? '' },
    base: { sha: json.base.sha, ref: json.base.ref },
    fromFork: headRepo !== json.base.repo.full_name,
    url: json.html_url,
  };
}

/** At most `max` characters (code points), the last an ellipsis when cut. */
function cut(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}
