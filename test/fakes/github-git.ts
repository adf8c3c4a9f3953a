import { execFile } from 'node:child_process';

/** One commit as git stores it, for the fake GitHub's JSON. Dates are GitHub's ISO 8601 form (seconds, `Z`). */
export interface GitCommit {
  sha: string;
  tree: string;
  parents: string[];
  author: { name: string; email: string; date: string };
  committer: { name: string; email: string; date: string };
  message: string;
}

/** One changed path between two commits, from `git diff --raw`. */
export interface GitChange {
  status: 'added' | 'removed' | 'modified' | 'renamed' | 'copied' | 'changed';
  filename: string;
  previousFilename: string | undefined;
  /** The blob after the change (before it, for a removal). */
  blob: string;
}

/** Read access to one real repository on disk (a work tree or a bare repository). */
export interface GitReader {
  /** The commit a ref, branch name or hash names; undefined when there is none. */
  resolve(ref: string): Promise<string | undefined>;
  /** Commits of `git rev-list --topo-order ARGS` (newest first; `--reverse` for oldest first). */
  commits(...args: string[]): Promise<GitCommit[]>;
  count(...args: string[]): Promise<number>;
  isAncestor(ancestor: string, descendant: string): Promise<boolean>;
  mergeBase(a: string, b: string): Promise<string | undefined>;
  diff(base: string, head: string): Promise<GitChange[]>;
  /** Every entry of the commit's tree, subtrees included, as `git ls-tree -r -t` lists them. */
  tree(commit: string): Promise<{ mode: string; type: string; sha: string; path: string }[]>;
  /** `git archive` as GitHub's tarball endpoint makes it: gzipped, every path under `prefix/`. */
  archive(commit: string, prefix: string): Promise<Buffer>;
  /** Runs git in the repository; rejects with git's stderr on a non-zero exit. */
  git(...args: string[]): Promise<string>;
}

const FORMAT = '%H%x1f%T%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B%x00';
const STATUS: Record<string, GitChange['status']> = { A: 'added', D: 'removed', M: 'modified', R: 'renamed', C: 'copied', T: 'changed' };

/** A reader over the repository at `path`. */
export function gitReader(path: string): GitReader {
  const run = (args: readonly string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> =>
    new Promise((resolve, reject) => {
      execFile('git', ['-C', path, ...args], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== 'number') reject(error);
        else resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr: stderr.toString('utf8') });
      });
    });
  const git = async (...args: string[]): Promise<string> => {
    const result = await run(args);
    if (result.code !== 0) throw new Error(`git ${args.join(' ')} in ${path}: ${result.stderr.trim()}`);
    return result.stdout.toString('utf8');
  };

  return {
    git,
    async resolve(ref) {
      const result = await run(['rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`]);
      const sha = result.stdout.toString('utf8').trim();
      return result.code === 0 && /^[0-9a-f]{40}$/.test(sha) ? sha : undefined;
    },
    async commits(...args) {
      const output = await git('rev-list', '--topo-order', '--no-commit-header', `--format=${FORMAT}`, ...args);
      return output
        .split('\0')
        .map((record) => record.replace(/^\n/, ''))
        .filter((record) => record !== '')
        .map((record) => {
          const [sha = '', tree = '', parents = '', an = '', ae = '', ad = '', cn = '', ce = '', cd = '', ...message] = record.split('\x1f');
          return { sha, tree, parents: parents === '' ? [] : parents.split(' '), author: { name: an, email: ae, date: isoDate(ad) }, committer: { name: cn, email: ce, date: isoDate(cd) }, message: message.join('\x1f').replace(/\n+$/, '') };
        });
    },
    async count(...args) {
      return Number.parseInt(await git('rev-list', '--count', ...args), 10);
    },
    async isAncestor(ancestor, descendant) {
      return (await run(['merge-base', '--is-ancestor', ancestor, descendant])).code === 0;
    },
    async mergeBase(a, b) {
      const result = await run(['merge-base', a, b]);
      return result.code === 0 ? result.stdout.toString('utf8').trim() : undefined;
    },
    async diff(base, head) {
      const fields = (await git('diff', '--raw', '-z', '-M', '--no-abbrev', base, head)).split('\0');
      const changes: GitChange[] = [];
      for (let i = 0; i < fields.length; ) {
        const meta = fields[i++] ?? '';
        if (!meta.startsWith(':')) continue;
        const [, , oldBlob = '', newBlob = '', code = ''] = meta.slice(1).split(' ');
        const status = STATUS[code.charAt(0)] ?? 'changed';
        const first = fields[i++] ?? '';
        const renamed = status === 'renamed' || status === 'copied';
        const filename = renamed ? (fields[i++] ?? '') : first;
        changes.push({ status, filename, previousFilename: renamed ? first : undefined, blob: status === 'removed' ? oldBlob : newBlob });
      }
      return changes;
    },
    async tree(commit) {
      const output = await git('ls-tree', '-r', '-t', '-z', '--full-tree', commit);
      return output
        .split('\0')
        .filter((line) => line !== '')
        .map((line) => {
          const tab = line.indexOf('\t');
          const [mode = '', type = '', sha = ''] = line.slice(0, tab).split(' ');
          return { mode, type, sha, path: line.slice(tab + 1) };
        });
    },
    async archive(commit, prefix) {
      const result = await run(['archive', '--format=tar.gz', `--prefix=${prefix}/`, commit]);
      if (result.code !== 0) throw new Error(`git archive ${commit} in ${path}: ${result.stderr.trim()}`);
      return result.stdout;
    },
  };
}

/** git's strict ISO 8601 ("2023-11-14T22:14:20+00:00") as GitHub writes dates ("2023-11-14T22:14:20Z"). */
function isoDate(text: string): string {
  return new Date(text).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
