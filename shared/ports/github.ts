import type { GitHubRepo } from '../core/model/types.ts';

/**
 * The GitHub port: what the trybot path asks of GitHub beyond commits (those are the Source port's): pull requests,
 * who belongs to which organisation or team, and where verdicts go. Adapters raise RetryableError (with
 * `retryAfterMs`) when the rate limit is spent and PermanentError for what does not exist.
 */

export interface PullRequest {
  number: number;
  state: 'open' | 'closed';
  title: string;
  /** The login of whoever opened it. */
  author: string;
  head: {
    sha: string;
    /** The branch name in the head repository. */
    ref: string;
    /** "owner/name" of the head repository: another repository's for a pull request from a fork. */
    repo: string;
  };
  base: { sha: string; ref: string };
  /** True when the head lives in another repository than the base. */
  fromFork: boolean;
  /** Its page on GitHub. */
  url: string;
}

/** Where one builder's build of one commit stands, as GitHub shows it beside the commit. */
export interface BuilderStatus {
  sha: string;
  /** The check's name, one per builder: "hermetic/<builder>". */
  context: string;
  state: 'queued' | 'running' | 'success' | 'failure' | 'error';
  /** One line; the adapter cuts it to the 140 characters GitHub keeps of a commit status. */
  description: string;
  /** The build's page on the dashboard. */
  targetUrl?: string;
}

export interface GitHub {
  /** One pull request. Throws PermanentError when there is none with that number. */
  pullRequest(repo: GitHubRepo, number: number): Promise<PullRequest>;
  /** Every open pull request, newest first, across all pages. */
  openPullRequests(repo: GitHubRepo): Promise<PullRequest[]>;
  /** Whether `login` is a member of the organisation (public or private membership, as the credentials can see). */
  isOrgMember(org: string, login: string): Promise<boolean>;
  /** Whether `login` is an active member of the team `org/team` (the team's slug). */
  isTeamMember(org: string, team: string, login: string): Promise<boolean>;
  /**
   * Shows a builder's status beside the commit: a commit status under a token, a check run under a GitHub App
   * (created once per commit and context, then updated). Setting the same status again changes nothing.
   */
  setStatus(repo: GitHubRepo, status: BuilderStatus): Promise<void>;
  /** Comments on an issue or pull request. */
  comment(repo: GitHubRepo, number: number, body: string): Promise<void>;
}

/** Remembered responses for conditional requests: an unchanged resource answers 304 and costs no rate limit. */
export interface EtagCache {
  get(key: string): Promise<{ etag: string; value: unknown } | undefined>;
  set(key: string, entry: { etag: string; value: unknown }): Promise<void>;
}
