import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { isCommitHash, isSafeBranchName } from '../../core/model/refs.ts';
import { PermanentError, RetryableError } from '../../core/errors.ts';
import type { Repo } from '../../core/model/types.ts';
import { silentLogger, type Logger } from '../../ports/log.ts';
import type { BranchChanges, CommitInfo, Source } from '../../ports/source.ts';
import { checkChangesArguments, checkCommitArgument } from '../source-arguments.ts';

export interface GitSourceOptions {
  /** Where the bare mirrors live, one directory per repo URL. Created when missing. */
  cacheDir: string;
  /** Upper bound for any single git invocation (a first fetch of a big repo included). Default 10 minutes. */
  timeoutMs?: number;
  logger?: Logger;
}

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;
/** Archives of a Go tree are tens of MB; this only guards against a runaway. */
const MAX_OUTPUT_BYTES = 1024 * 1024 * 1024;
const ALLOWED_PROTOCOLS = 'file:git:http:https:ssh';
const HEADS_REFSPEC = '+refs/heads/*:refs/heads/*';
/** Repo names are slugs already (config validates them); checked again because they become a directory name. */
const SAFE_DIR_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/**
 * GIT_* variables an operator may set on purpose to reach private remotes; the URL cannot influence them. Every
 * other GIT_* variable (GIT_DIR, GIT_CONFIG_PARAMETERS, GIT_OBJECT_DIRECTORY, ...) is dropped so the caller's
 * environment cannot redirect which repository git works on.
 */
const KEPT_GIT_ENV = new Set(['GIT_SSH', 'GIT_SSH_COMMAND', 'GIT_SSH_VARIANT']);
/**
 * Put before every subcommand. Hooks and fsmonitor would run programs; auto gc must not detach into a background
 * process that outlives our timeout. User and system config stay in force on purpose: credential helpers, ssh
 * settings and `insteadOf` rewrites for private remotes live there.
 */
const GLOBAL_ARGS = [
  '-c', 'protocol.ext.allow=never',
  '-c', 'core.hooksPath=/dev/null',
  '-c', 'core.fsmonitor=false',
  '-c', 'fetch.recurseSubmodules=false',
  '-c', 'gc.autoDetach=false',
  '-c', 'maintenance.autoDetach=false',
];

interface GitResult {
  exitCode: number;
  stdout: Buffer;
  stderr: string;
}

/**
 * A Source over any git remote (local path, file://, http(s), ssh, git) through the `git` program, keeping one
 * bare mirror per repo URL under `cacheDir`. Invalid input throws PermanentError before git runs; a git failure
 * throws an Error carrying git's stderr; a timeout throws RetryableError.
 */
export function createGitSource(options: GitSourceOptions): Source {
  const cacheDir = resolve(options.cacheDir);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const logger = options.logger ?? silentLogger;
  const env = gitEnv();
  /** Tail of the operation chain per mirror directory: overlapping polls of one repo run one after another. */
  const tails = new Map<string, Promise<void>>();

  async function withMirrorLock<T>(mirror: string, operation: () => Promise<T>): Promise<T> {
    const previous = tails.get(mirror) ?? Promise.resolve();
    const run = previous.then(operation);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    tails.set(mirror, tail);
    try {
      return await run;
    } finally {
      if (tails.get(mirror) === tail) tails.delete(mirror);
    }
  }

  function spawnGit(args: readonly string[], cwd: string): Promise<GitResult> {
    const what = `git ${args[0] ?? ''}`;
    return new Promise((resolvePromise, reject) => {
      execFile(
        'git',
        [...GLOBAL_ARGS, ...args],
        { cwd, env, timeout: timeoutMs, maxBuffer: MAX_OUTPUT_BYTES, encoding: 'buffer', windowsHide: true },
        (error, stdout, stderr) => {
          const stderrText = redact(stderr.toString('utf8').trim());
          if (error === null) {
            resolvePromise({ exitCode: 0, stdout, stderr: stderrText });
          } else if (typeof error.code === 'number') {
            resolvePromise({ exitCode: error.code, stdout, stderr: stderrText });
          } else if (error.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
            reject(new Error(`${what}: output larger than ${MAX_OUTPUT_BYTES} bytes`, { cause: error }));
          } else if (error.killed === true) {
            reject(new RetryableError(`${what} timed out after ${timeoutMs} ms${stderrText ? `: ${stderrText}` : ''}`, { cause: error }));
          } else if (error.signal != null) {
            reject(new RetryableError(`${what} was killed by ${error.signal}${stderrText ? `: ${stderrText}` : ''}`, { cause: error }));
          } else {
            reject(new Error(`could not run ${what}: ${error.message}`, { cause: error }));
          }
        },
      );
    });
  }

  /** Runs git against the mirror; a non-zero exit becomes an Error with git's stderr. */
  async function git(mirror: string, args: readonly string[], context: string): Promise<Buffer> {
    const result = await spawnGit([`--git-dir=${mirror}`, ...args], mirror);
    if (result.exitCode !== 0) {
      throw new Error(`${context}: git ${args[0] ?? ''} exited with ${result.exitCode}${result.stderr ? `: ${result.stderr}` : ''}`);
    }
    return result.stdout;
  }

  function mirrorPath(repo: Repo): string {
    if (!SAFE_DIR_NAME.test(repo.name)) throw new PermanentError(`git source: unsafe repo name ${JSON.stringify(repo.name)}`);
    // Keyed by URL too, so pointing a repo name at another URL never reuses the old mirror's branches.
    const urlKey = createHash('sha256').update(repo.url).digest('hex').slice(0, 16);
    return join(cacheDir, `${repo.name}-${urlKey}.git`);
  }

  async function ensureMirror(repo: Repo, mirror: string): Promise<void> {
    if (await exists(mirror)) return;
    await mkdir(cacheDir, { recursive: true });
    // Initialised aside and renamed into place, so a crash never leaves a half-made mirror under the real name.
    const staging = await mkdtemp(join(cacheDir, `.init-${repo.name}-`));
    try {
      const result = await spawnGit(['-c', 'init.defaultBranch=main', 'init', '--quiet', '--bare', '--template=', '--', staging], cacheDir);
      if (result.exitCode !== 0) throw new Error(`repo "${repo.name}": git init of the mirror failed: ${result.stderr}`);
      await rename(staging, mirror).catch(async (error: unknown) => {
        // Another process made it first; theirs is as good as ours.
        if (!(await exists(mirror))) throw error;
      });
      logger.info('source.mirror_created', { repo: repo.name, mirror });
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  async function fetchHeads(repo: Repo, mirror: string): Promise<void> {
    await git(
      mirror,
      ['fetch', '--quiet', '--prune', '--force', '--no-tags', '--no-write-fetch-head', '--no-recurse-submodules', '--end-of-options', remoteUrl(repo.url), HEADS_REFSPEC],
      `repo "${repo.name}" (${redact(repo.url)}): fetch failed`,
    );
  }

  async function hasCommit(mirror: string, commit: string): Promise<boolean> {
    const result = await spawnGit([`--git-dir=${mirror}`, 'cat-file', '-e', '--end-of-options', `${commit}^{commit}`], mirror);
    return result.exitCode === 0;
  }

  async function resolveBranch(repo: Repo, mirror: string, branch: string): Promise<string> {
    const result = await spawnGit([`--git-dir=${mirror}`, 'rev-parse', '--verify', '--quiet', '--end-of-options', `refs/heads/${branch}^{commit}`], mirror);
    const head = result.stdout.toString('utf8').trim();
    if (result.exitCode !== 0 || !isCommitHash(head)) {
      throw new Error(`repo "${repo.name}" (${redact(repo.url)}) has no branch "${branch}"`);
    }
    return head;
  }

  async function isAncestor(repo: Repo, mirror: string, ancestor: string, descendant: string): Promise<boolean> {
    const result = await spawnGit([`--git-dir=${mirror}`, 'merge-base', '--is-ancestor', '--end-of-options', ancestor, descendant], mirror);
    if (result.exitCode === 0) return true;
    if (result.exitCode === 1) return false;
    throw new Error(`repo "${repo.name}": git merge-base exited with ${result.exitCode}: ${result.stderr}`);
  }

  /** The newest `limit` commits of the range, oldest first, in one rev-list call. */
  async function listCommits(repo: Repo, mirror: string, limit: number, range: readonly string[]): Promise<CommitInfo[]> {
    if (limit === 0) return [];
    // --max-count picks the first `limit` in topo order (the newest, closed under descendants), --reverse then
    // flips just those, so parents come before children.
    const output = await git(
      mirror,
      ['rev-list', '--topo-order', '--reverse', `--max-count=${limit}`, '--no-commit-header', '--format=%H%x1f%T%x1f%P%x1f%an <%ae>%x1f%ct%x1f%s%x00', '--end-of-options', ...range],
      `repo "${repo.name}": listing commits failed`,
    );
    return parseCommits(output.toString('utf8'));
  }

  async function countCommits(repo: Repo, mirror: string, range: readonly string[]): Promise<number> {
    const output = await git(mirror, ['rev-list', '--count', '--end-of-options', ...range], `repo "${repo.name}": counting commits failed`);
    return Number.parseInt(output.toString('utf8').trim(), 10);
  }

  return {
    async changes(repo, branch, previousHead, limit): Promise<BranchChanges> {
      checkUrl(repo);
      checkChangesArguments(repo, branch, previousHead, limit);
      const mirror = mirrorPath(repo);

      return withMirrorLock(mirror, async () => {
        await ensureMirror(repo, mirror);
        await fetchHeads(repo, mirror);
        const head = await resolveBranch(repo, mirror, branch);
        if (previousHead === head) return { head, commits: [], forced: false, skipped: 0 };

        // First poll, or the previous head is gone from the mirror (rewritten and garbage collected): there is
        // no range to compute, so take the last `limit` commits. Older history is not counted as skipped: it is
        // not new work, and counting it in a repo like Go's walks 60k commits for nothing.
        if (previousHead === undefined || !(await hasCommit(mirror, previousHead))) {
          const commits = await listCommits(repo, mirror, limit, [head]);
          return { head, commits, forced: previousHead !== undefined, skipped: 0 };
        }

        const forced = !(await isAncestor(repo, mirror, previousHead, head));
        const range = [head, `^${previousHead}`];
        const commits = await listCommits(repo, mirror, limit, range);
        const skipped = commits.length < limit ? 0 : (await countCommits(repo, mirror, range)) - commits.length;
        if (skipped > 0) {
          logger.warn('source.commits_skipped', { repo: repo.name, branch, head, previousHead, kept: commits.length, skipped });
        }
        if (forced) logger.warn('source.history_rewritten', { repo: repo.name, branch, head, previousHead });
        return { head, commits, forced, skipped };
      });
    },

    async archive(repo, commit): Promise<Uint8Array> {
      const mirror = checkedMirror(repo, commit);
      // ^{commit}: a hash that names a tree or a blob is refused, as ensureCommit would.
      const args = ['archive', '--format=tar.gz', '--end-of-options', `${commit}^{commit}`];
      return withMirrorLock(mirror, async () => {
        // Mostly the commit is in the mirror already (a poll put it there): one git process instead of a check first.
        const ready = (await exists(mirror)) ? await spawnGit([`--git-dir=${mirror}`, ...args], mirror) : undefined;
        if (ready?.exitCode === 0) return bytesOf(ready.stdout);
        await ensureCommit(repo, mirror, commit, undefined);
        return bytesOf(await git(mirror, args, `repo "${repo.name}": archive of ${commit} failed`));
      });
    },

    async fetchCommit(repo, commit, ref): Promise<CommitInfo> {
      const mirror = checkedMirror(repo, commit);
      if (ref !== undefined && !isSafeBranchName(ref)) throw new PermanentError(`repo "${repo.name}": unsafe ref name ${JSON.stringify(ref)}`);
      return withMirrorLock(mirror, async () => {
        await ensureCommit(repo, mirror, commit, ref);
        const [info] = await listCommits(repo, mirror, 1, [commit]);
        if (info === undefined) throw new PermanentError(`repo "${repo.name}" has no commit ${commit}`);
        return info;
      });
    },

    async changedFiles(repo, base, head): Promise<string[]> {
      const mirror = checkedMirror(repo, base);
      checkCommitArgument(repo, head);
      return withMirrorLock(mirror, async () => {
        for (const commit of [base, head]) await ensureCommit(repo, mirror, commit, undefined);
        const output = await git(mirror, ['diff', '--name-only', '-z', '--no-renames', '--end-of-options', base, head], `repo "${repo.name}": diff of ${base} and ${head} failed`);
        return output.toString('utf8').split('\0').filter((path) => path !== '').sort();
      });
    },
  };

  /** The mirror of a repo, after checking the URL and that `commit` is a full hash. */
  function checkedMirror(repo: Repo, commit: string): string {
    checkUrl(repo);
    checkCommitArgument(repo, commit);
    return mirrorPath(repo);
  }

  /**
   * Makes sure the mirror has the commit: from the branches, then from `ref` (kept under refs/hermetic/ so it is not
   * collected), then by hash, which protocol v2 servers grant for any reachable commit. Throws PermanentError when
   * none of them has it.
   */
  async function ensureCommit(repo: Repo, mirror: string, commit: string, ref: string | undefined): Promise<void> {
    await ensureMirror(repo, mirror);
    if (await hasCommit(mirror, commit)) return;
    await fetchHeads(repo, mirror);
    const fetch = (refspec: string) =>
      spawnGit(
        [`--git-dir=${mirror}`, 'fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--no-recurse-submodules', '--end-of-options', remoteUrl(repo.url), refspec],
        mirror,
      );
    // A refusal is not an error yet; the check at the end reports it.
    if (ref !== undefined && !(await hasCommit(mirror, commit))) await fetch(`+${ref}:refs/hermetic/${commit}`);
    if (!(await hasCommit(mirror, commit))) await fetch(commit);
    if (!(await hasCommit(mirror, commit))) throw new PermanentError(`repo "${repo.name}" (${redact(repo.url)}) has no commit ${commit}`);
  }
}

/** Refuses URLs git could read as an option, and control characters (newlines smuggle into credential helpers). */
function checkUrl(repo: Repo): void {
  if (repo.url === '' || repo.url.startsWith('-') || /[\u0000-\u001f\u007f]/.test(repo.url)) {
    throw new PermanentError(`repo "${repo.name}": refusing git URL ${JSON.stringify(repo.url)}`);
  }
}

/** Local paths are made absolute because git runs inside the mirror, not in our working directory. */
function remoteUrl(url: string): string {
  // git's own rule: "host:path" with no slash before the first colon is scp-like ssh, "x://" a URL.
  const isLocalPath = !url.includes('://') && !/^[^/]*:/.test(url);
  return isLocalPath && !isAbsolute(url) ? resolve(url) : url;
}

/** Credentials embedded in a URL (https://user:token@host) never reach a log or an error message. */
function redact(text: string): string {
  return text.replace(/(:\/\/)[^/@\s]+@/g, '$1***@');
}

function gitEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && (!key.startsWith('GIT_') || KEPT_GIT_ENV.has(key))) env[key] = value;
  }
  env.GIT_TERMINAL_PROMPT = '0';
  // Overrides protocol.allow from any config: ext:: and fd:: (which run commands) and unknown helpers are refused.
  env.GIT_ALLOW_PROTOCOL = ALLOWED_PROTOCOLS;
  env.LC_ALL = 'C';
  return env;
}

function parseCommits(output: string): CommitInfo[] {
  const commits: CommitInfo[] = [];
  for (const raw of output.split('\0')) {
    const record = raw.replace(/^\n/, '');
    if (record === '') continue;
    const [hash, tree, parents, author, committed, ...subject] = record.split('\x1f');
    if (hash === undefined || tree === undefined || parents === undefined || author === undefined || committed === undefined || !isCommitHash(hash) || !isCommitHash(tree)) {
      throw new Error(`git rev-list: unexpected output ${JSON.stringify(record.slice(0, 200))}`);
    }
    commits.push({
      hash,
      tree,
      parents: parents === '' ? [] : parents.split(' '),
      author,
      // A subject may itself contain the separator; it is the last field, so rejoin it.
      subject: subject.join('\x1f'),
      committedAt: Number.parseInt(committed, 10) * 1000,
    });
  }
  return commits;
}

function bytesOf(output: Buffer): Uint8Array {
  return new Uint8Array(output.buffer, output.byteOffset, output.byteLength);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
