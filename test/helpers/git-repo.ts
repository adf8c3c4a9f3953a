import { execFile } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';

export interface TestRepo {
  /** Absolute path of the work tree. */
  path: string;
  /**
   * Writes `files` (path relative to the repo -> contents), stages them and commits; returns the new commit hash.
   * Paths in `executable` get mode 755 in the commit. Throws when git fails.
   */
  commit(files: Record<string, string>, message: string, options?: { executable?: string[] }): Promise<string>;
  /** Runs git in the repo with the helper's deterministic identity; resolves stdout without trailing newlines. */
  git(...args: string[]): Promise<string>;
}

/** Fixed start of the fake clock: each git call of a repo is one minute after its previous one. */
const EPOCH_SECONDS = 1_700_000_000;

/**
 * Creates a git repo with default branch `main` in `dir` (made if missing), isolated from the user's git config,
 * with a fixed author, committer and clock so hashes are the same on every run. Rejects when git fails.
 */
export async function createTestRepo(dir: string): Promise<TestRepo> {
  const path = resolve(dir);
  await mkdir(path, { recursive: true });
  let tick = 0;

  function git(...args: string[]): Promise<string> {
    tick += 1;
    const when = `${EPOCH_SECONDS + tick * 60} +0000`;
    return new Promise((resolvePromise, reject) => {
      execFile('git', args, { cwd: path, env: testGitEnv(when), encoding: 'utf8' }, (error, stdout, stderr) => {
        if (error === null) resolvePromise(stdout.replace(/\n+$/, ''));
        else reject(new Error(`git ${args.join(' ')} failed in ${path}: ${stderr.trim() || error.message}`, { cause: error }));
      });
    });
  }

  await git('init', '--quiet', '--initial-branch=main');

  return {
    path,
    git,
    async commit(files, message, options) {
      const names = Object.keys(files);
      for (const name of names) {
        const target = resolve(path, name);
        if (!target.startsWith(path + sep)) throw new Error(`createTestRepo: ${name} is outside the repo`);
        await mkdir(dirname(target), { recursive: true });
        await writeFile(target, files[name] ?? '');
      }
      for (const name of options?.executable ?? []) await chmod(join(path, name), 0o755);
      if (names.length > 0) await git('add', '--', ...names);
      if (options?.executable !== undefined && options.executable.length > 0) {
        await git('update-index', '--chmod=+x', '--', ...options.executable);
      }
      await git('commit', '--quiet', '--allow-empty', '--no-verify', '-m', message);
      return git('rev-parse', 'HEAD');
    },
  };
}

/** The parent environment minus GIT_*, plus a fixed identity and clock, and no user or system git config. */
function testGitEnv(when: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('GIT_')) env[key] = value;
  }
  return {
    ...env,
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 'Test Author',
    GIT_AUTHOR_EMAIL: 'author@example.com',
    GIT_AUTHOR_DATE: when,
    GIT_COMMITTER_NAME: 'Test Committer',
    GIT_COMMITTER_EMAIL: 'committer@example.com',
    GIT_COMMITTER_DATE: when,
    LC_ALL: 'C',
  };
}
