import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pathExists } from '../path-exists.ts';

const run = promisify(execFile);

/**
 * Makes the example repository at `dir` from the commit folders in `recipeDir` (one folder per commit, applied in
 * name order, `COMMIT_MSG` holding the message), unless it exists already. A half-made repo is removed and made
 * again. Throws with git's message when git fails.
 */
export async function ensureExampleRepo(dir: string, recipeDir: string): Promise<void> {
  if (await pathExists(join(dir, '.git', 'hermetic-example-complete'))) return;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const env = {
    ...process.env,
    GIT_AUTHOR_NAME: 'Hermetic Example',
    GIT_AUTHOR_EMAIL: 'example@hermetic.invalid',
    GIT_COMMITTER_NAME: 'Hermetic Example',
    GIT_COMMITTER_EMAIL: 'example@hermetic.invalid',
  };
  const git = (...args: string[]) => run('git', args, { cwd: dir, env });
  await git('init', '--quiet', '--initial-branch=main');
  const commits = (await readdir(recipeDir, { withFileTypes: true }))
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  for (const name of commits) {
    const folder = join(recipeDir, name);
    await cp(folder, dir, { recursive: true, filter: (source) => !source.endsWith('COMMIT_MSG') });
    const message = (await readFile(join(folder, 'COMMIT_MSG'), 'utf8')).trim();
    await git('add', '--all');
    await git('commit', '--quiet', '--no-gpg-sign', '-m', message);
  }
  await writeFile(join(dir, '.git', 'hermetic-example-complete'), 'made by hermetic up\n');
}
