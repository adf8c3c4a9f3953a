import type { Octokit } from 'octokit';
import { isCommitHash } from '../../core/model/refs.ts';
import { PermanentError } from '../../core/errors.ts';
import type { GitHubRepo, Repo } from '../../core/model/types.ts';
import type { EtagCache } from '../../ports/github.ts';
import { silentLogger, type Logger } from '../../ports/log.ts';
import type { BranchChanges, CommitInfo, Source } from '../../ports/source.ts';
import { requestStatus, type GitHubClient } from './client.ts';
import { checkChangesArguments, checkCommitArgument } from '../source-arguments.ts';
import { stripTarballPrefix } from './strip-tarball-prefix.ts';

export interface GitHubSourceDeps {
  client: GitHubClient;
  /** Where branch heads' ETags are kept, so an unchanged branch is answered 304 and costs no rate limit. */
  etags: EtagCache;
  logger?: Logger;
}

const PER_PAGE = 100;
/** The compare API lists at most this many changed files, on its first page only. */
const COMPARE_MAX_FILES = 300;

/** The parts of GitHub's commit JSON a CommitInfo is made of (the list, compare and single-commit shapes share them). */
interface CommitJson {
  sha: string;
  parents: { sha: string }[];
  commit: {
    tree: { sha: string };
    message: string;
    author: { name?: string; email?: string } | null;
    committer: { date?: string } | null;
  };
}

/**
 * A Source over GitHub's REST API for repos with a `github` field (others throw PermanentError). A poll of an
 * unchanged branch is one conditional request answered 304; a commit GitHub does not have throws PermanentError;
 * rate limits and GitHub's failures throw RetryableError (see createGitHubClient).
 */
export function createGitHubSource(deps: GitHubSourceDeps): Source {
  const logger = deps.logger ?? silentLogger;

  /** The branch's head commit, by a request made conditional on the last answer's ETag. */
  async function branchHead(octokit: Octokit, gh: GitHubRepo, branch: string): Promise<string> {
    const key = `branch-head:${gh.owner}/${gh.name}:${branch}`;
    const known = await deps.etags.get(key);
    try {
      const response = await octokit.request('GET /repos/{owner}/{repo}/commits/{ref}', {
        owner: gh.owner,
        repo: gh.name,
        ref: branch,
        // Just the hash: the commit's files and patches are not wanted here.
        headers: { accept: 'application/vnd.github.sha', ...(known === undefined ? {} : { 'if-none-match': known.etag }) },
      });
      const head = String(response.data).trim();
      if (!isCommitHash(head)) throw new Error(`${gh.owner}/${gh.name}: GitHub answered ${JSON.stringify(head.slice(0, 80))} for the head of ${branch}`);
      const etag = response.headers.etag;
      if (etag !== undefined) await deps.etags.set(key, { etag, value: head });
      return head;
    } catch (error) {
      const status = requestStatus(error);
      if (status === 304 && known !== undefined && typeof known.value === 'string') return known.value;
      if (status === 404 || status === 422) throw new PermanentError(`${gh.owner}/${gh.name} has no branch "${branch}"`, { cause: error });
      throw error;
    }
  }

  /** The newest `limit` commits of the history ending at `head`, oldest first. */
  async function lastCommits(octokit: Octokit, gh: GitHubRepo, head: string, limit: number): Promise<CommitInfo[]> {
    if (limit === 0) return [];
    let collected = 0;
    const commits = await octokit.paginate('GET /repos/{owner}/{repo}/commits', { owner: gh.owner, repo: gh.name, sha: head, per_page: Math.min(PER_PAGE, limit) }, (response, done) => {
      collected += response.data.length;
      if (collected >= limit) done();
      return response.data;
    });
    return commits.slice(0, limit).map(commitInfo).reverse();
  }

  /**
   * The newest `limit` commits of head since base, oldest first, with how many there are in all and whether base is
   * still an ancestor; undefined when GitHub knows no such base or no common history.
   */
  async function since(octokit: Octokit, gh: GitHubRepo, base: string, head: string, limit: number): Promise<{ commits: CommitInfo[]; total: number; forced: boolean } | undefined> {
    const page = (n: number) => octokit.request('GET /repos/{owner}/{repo}/compare/{basehead}', { owner: gh.owner, repo: gh.name, basehead: `${base}...${head}`, per_page: PER_PAGE, page: n });
    let first;
    try {
      first = (await page(1)).data;
    } catch (error) {
      if (requestStatus(error) === 404 || requestStatus(error) === 422) return undefined;
      throw error;
    }
    const total = first.total_commits;
    const from = Math.max(0, total - limit);
    // Pages run oldest first, so only the ones from the page holding commit `from` on are fetched.
    const firstWanted = Math.floor(from / PER_PAGE) + 1;
    const listed: CommitJson[] = [];
    for (let n = firstWanted; n <= Math.ceil(total / PER_PAGE); n++) listed.push(...(n === 1 ? first.commits : (await page(n)).data.commits));
    const commits = listed.slice(from - (firstWanted - 1) * PER_PAGE).map(commitInfo);
    return { commits, total, forced: first.status === 'diverged' || first.status === 'behind' };
  }

  return {
    async changes(repo, branch, previousHead, limit): Promise<BranchChanges> {
      const gh = githubRepoOf(repo);
      checkChangesArguments(repo, branch, previousHead, limit);
      const octokit = await deps.client.forRepo(gh);
      const head = await branchHead(octokit, gh, branch);
      if (previousHead === head) return { head, commits: [], forced: false, skipped: 0 };

      const range = previousHead === undefined ? undefined : await since(octokit, gh, previousHead, head, limit);
      // First poll, or a previous head GitHub no longer has: the last `limit` commits, with no older history
      // counted as skipped (as the git source does).
      if (range === undefined) return { head, commits: await lastCommits(octokit, gh, head, limit), forced: previousHead !== undefined, skipped: 0 };
      const skipped = range.total - range.commits.length;
      if (skipped > 0) logger.warn('source.commits_skipped', { repo: repo.name, branch, head, previousHead, kept: range.commits.length, skipped });
      if (range.forced) logger.warn('source.history_rewritten', { repo: repo.name, branch, head, previousHead });
      return { head, commits: range.commits, forced: range.forced, skipped };
    },

    archive: (repo, commit) =>
      askAbout(repo, [commit], (name) => `${name} has no commit ${commit}`, async (octokit, gh) => {
        // GitHub answers with a redirect to codeload, which fetch follows.
        const response = await octokit.request('GET /repos/{owner}/{repo}/tarball/{ref}', { owner: gh.owner, repo: gh.name, ref: commit });
        const data: unknown = response.data;
        if (!(data instanceof ArrayBuffer)) throw new Error(`${gh.owner}/${gh.name}: the tarball of ${commit} came as ${typeof data}, not bytes`);
        return stripTarballPrefix(new Uint8Array(data));
      }),

    fetchCommit: (repo, commit) =>
      askAbout(repo, [commit], (name) => `${name} has no commit ${commit}`, async (octokit, gh) => {
        // No ref needed: GitHub serves any commit of the repository's network, a pull request's head included.
        const response = await octokit.request('GET /repos/{owner}/{repo}/commits/{ref}', { owner: gh.owner, repo: gh.name, ref: commit });
        return commitInfo(response.data);
      }),

    changedFiles: (repo, base, head) =>
      askAbout(repo, [base, head], (name) => `${name}: cannot compare ${base} with ${head} (an unknown commit, or no common history)`, async (octokit, gh) => {
        // One commit per page: only the files are wanted, and they come whole (up to the cap) on the first page.
        const response = await octokit.request('GET /repos/{owner}/{repo}/compare/{basehead}', { owner: gh.owner, repo: gh.name, basehead: `${base}...${head}`, per_page: 1 });
        const files = response.data.files ?? [];
        if (files.length >= COMPARE_MAX_FILES) return treeDifference(octokit, gh, base, head);
        return sortedUnique(files.flatMap((file) => (file.previous_filename === undefined ? [file.filename] : [file.filename, file.previous_filename])));
      }),
  };

  /**
   * Asks GitHub about commits of a repo, after checking each is a full hash, with the repo's client; GitHub's 404 or
   * 422 (no such commit, no common history) becomes a PermanentError saying `missing` of "OWNER/NAME".
   */
  async function askAbout<T>(repo: Repo, commits: readonly string[], missing: (name: string) => string, ask: (octokit: Octokit, gh: GitHubRepo) => Promise<T>): Promise<T> {
    const gh = githubRepoOf(repo);
    for (const commit of commits) checkCommitArgument(repo, commit);
    const octokit = await deps.client.forRepo(gh);
    try {
      return await ask(octokit, gh);
    } catch (error) {
      const status = requestStatus(error);
      if (status === 404 || status === 422) throw new PermanentError(missing(`${gh.owner}/${gh.name}`), { cause: error });
      throw error;
    }
  }
}

/**
 * Paths whose blob or mode differs between two commits' whole trees: for changes too big for the compare API's file
 * list. Throws when GitHub truncates a tree.
 */
async function treeDifference(octokit: Octokit, gh: GitHubRepo, base: string, head: string): Promise<string[]> {
  const tree = async (commit: string): Promise<Map<string, string>> => {
    const { data } = await octokit.request('GET /repos/{owner}/{repo}/git/trees/{tree_sha}', { owner: gh.owner, repo: gh.name, tree_sha: commit, recursive: 'true' });
    if (data.truncated) throw new Error(`${gh.owner}/${gh.name}: the tree of ${commit} is too big for GitHub's trees API`);
    return new Map(data.tree.filter((entry) => entry.type !== 'tree' && entry.path !== undefined).map((entry) => [entry.path ?? '', `${entry.mode ?? ''} ${entry.sha ?? ''}`]));
  };
  const [from, to] = await Promise.all([tree(base), tree(head)]);
  return sortedUnique([...from.keys(), ...to.keys()].filter((path) => from.get(path) !== to.get(path)));
}

/** The repo's GitHub name; throws PermanentError naming the repo when it has none. */
function githubRepoOf(repo: Repo): GitHubRepo {
  if (repo.github === undefined) throw new PermanentError(`repo "${repo.name}" is not on GitHub (it has no github owner and name)`);
  return repo.github;
}

function commitInfo(json: CommitJson): CommitInfo {
  const { author, committer } = json.commit;
  const committedAt = Date.parse(committer?.date ?? '');
  if (!Number.isFinite(committedAt)) throw new Error(`GitHub gave commit ${json.sha} no committer date`);
  return {
    hash: json.sha,
    tree: json.commit.tree.sha,
    parents: json.parents.map((parent) => parent.sha),
    author: `${author?.name ?? ''} <${author?.email ?? ''}>`,
    subject: json.commit.message.split('\n', 1)[0] ?? '',
    committedAt,
  };
}

function sortedUnique(paths: string[]): string[] {
  return [...new Set(paths)].sort();
}
