import { PermanentError } from '../../shared/core/errors.ts';
import type { GitHubRepo } from '../../shared/core/model/types.ts';
import type { BuilderStatus, GitHub, PullRequest } from '../../shared/ports/github.ts';

/** The GitHub port in memory, for the pipeline's tests: what it was asked, and what it was told. */
export interface MemoryGitHub extends GitHub {
  orgs: Map<string, Set<string>>;
  teams: Map<string, Set<string>>;
  pulls: Map<number, PullRequest>;
  /** Every status set, in order; setting the one shown again adds nothing, as the adapter does. */
  statuses: Array<{ repo: string } & BuilderStatus>;
  comments: Array<{ repo: string; number: number; body: string }>;
  /** Membership questions asked, as "org:login" or "org/team:login". */
  asked: string[];
  /** Opens pull request `number` of acme/demo from `head` (a branch of acme/demo, or of `head.repo`) onto main at `base`. */
  open(number: number, head: { sha: string; ref: string; repo?: string }, base: string): void;
}

export function createMemoryGitHub(): MemoryGitHub {
  const orgs = new Map<string, Set<string>>();
  const teams = new Map<string, Set<string>>();
  const pulls = new Map<number, PullRequest>();
  const statuses: MemoryGitHub['statuses'] = [];
  const comments: MemoryGitHub['comments'] = [];
  const asked: string[] = [];
  const full = (repo: GitHubRepo) => `${repo.owner}/${repo.name}`;
  return {
    orgs,
    teams,
    pulls,
    statuses,
    comments,
    asked,
    open(number, head, base) {
      const repo = head.repo ?? 'acme/demo';
      pulls.set(number, {
        number,
        state: 'open',
        title: `pull request ${number}`,
        author: 'contributor',
        head: { sha: head.sha, ref: head.ref, repo },
        base: { sha: base, ref: 'main' },
        fromFork: repo !== 'acme/demo',
        url: `https://github.com/acme/demo/pull/${number}`,
      });
    },
    async pullRequest(_repo, number) {
      const pull = pulls.get(number);
      if (pull === undefined) throw new PermanentError(`no pull request #${number}`);
      return pull;
    },
    async openPullRequests() {
      return [...pulls.values()].filter((pull) => pull.state === 'open').sort((a, b) => b.number - a.number);
    },
    async isOrgMember(org, login) {
      asked.push(`${org}:${login}`);
      return orgs.get(org)?.has(login) ?? false;
    },
    async isTeamMember(org, team, login) {
      asked.push(`${org}/${team}:${login}`);
      return teams.get(`${org}/${team}`)?.has(login) ?? false;
    },
    async setStatus(repo, status) {
      const shown = statuses.findLast((earlier) => earlier.repo === full(repo) && earlier.sha === status.sha && earlier.context === status.context);
      if (shown !== undefined && shown.state === status.state && shown.description === status.description && shown.targetUrl === status.targetUrl) return;
      statuses.push({ repo: full(repo), ...status });
    },
    async comment(repo, number, body) {
      if (!pulls.has(number)) throw new PermanentError(`no pull request #${number} to comment on`);
      comments.push({ repo: full(repo), number, body });
    },
  };
}
