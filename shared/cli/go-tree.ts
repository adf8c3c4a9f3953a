import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { zipSync } from 'fflate';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pathExists } from '../path-exists.ts';
import { exitCodes, UsageError, type Io } from './io.ts';

export const goTreeHelp = `Usage: hermetic go-tree DIR [options]

Makes DIR a git repository holding a real Go source tree, for a go-tree builder to watch: the tree Debian's
golang-<version>-src package installs under /usr/share/go-<version> (apt-get install golang-1.19-src on Debian 12;
Debian 13 ships a newer one), with the VERSION file of Debian's matching toolchain. Run again after the package
is upgraded and the new tree becomes a new commit; an unchanged tree adds none. Then:

  hermetic up --repo DIR --builder go-tree

Options:
  --from DIR       the Go tree to copy (default: the newest /usr/share/go-* holding src/make.bash)
  --version TEXT   the tree's version, for its VERSION file (default: the tree's own, else /usr/lib/go-<v>/VERSION)
  --zoneinfo DIR   where lib/time/zoneinfo.zip comes from when the tree has none, as Debian's has not: Go's own
                   time tests read only that file (default /usr/share/zoneinfo, from tzdata; "none" leaves it out)
  --json           print { "dir", "commit", "version", "created" } on stdout
  -h, --help       show this help

Exit status: 0 done, 1 failed (no tree found, git failed), 2 bad usage.`;

// What make.bash and dist test read from a GOROOT; Debian leaves lib/ out (its zoneinfo comes from tzdata).
const treeDirs = ['src', 'misc', 'test', 'api', 'lib'] as const;
const identity = { GIT_AUTHOR_NAME: 'hermetic', GIT_AUTHOR_EMAIL: 'hermetic@localhost', GIT_COMMITTER_NAME: 'hermetic', GIT_COMMITTER_EMAIL: 'hermetic@localhost' };

/** `hermetic go-tree DIR`: a git repository of Debian's Go source tree, committed as one commit per version. */
export async function goTree(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      from: { type: 'string' },
      version: { type: 'string' },
      zoneinfo: { type: 'string', default: defaultZoneinfo },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout(goTreeHelp);
    return exitCodes.ok;
  }
  if (positionals.length !== 1 || positionals[0] === undefined) throw new UsageError('expected one DIR, the repository to make or update');
  const dir = resolve(io.cwd, positionals[0]);
  const from = values.from === undefined ? await newestDebianTree() : resolve(io.cwd, values.from);
  if (!(await pathExists(join(from, 'src', 'make.bash')))) {
    throw new Error(`${from} is not a Go source tree (no src/make.bash); install golang-1.19-src (Debian 12) or pass --from`);
  }
  const version = values.version ?? (await versionOf(from));
  io.stderr(`go-tree: copying ${from} (${version}) into ${dir}`);
  const zoneinfo = values.zoneinfo === 'none' ? undefined : resolve(io.cwd, values.zoneinfo);
  const repo = await commitGoTree(dir, from, version, zoneinfo);
  io.stderr(repo.changed ? 'go-tree: committed the tree' : 'go-tree: the tree is unchanged; no new commit');
  const { commit, created } = repo;
  if (values.json) io.stdout(JSON.stringify({ dir, commit, version, created }));
  else io.stderr(`go-tree: ${dir} is at ${commit.slice(0, 12)} (${version}); watch it with: hermetic up --repo ${dir} --builder go-tree`);
  return exitCodes.ok;
}

/** Debian's tzdata, where a Go tree's missing zoneinfo.zip is made from. */
export const defaultZoneinfo = '/usr/share/zoneinfo';

/**
 * Makes `dir` a git repository (if it is not one) whose last commit holds the Go tree at `from` and a VERSION file
 * saying `version`, plus, when the tree has no lib/time/zoneinfo.zip and `zoneinfo` is given, one made from that
 * zone directory; commits only when that changes the tree. Rejects when the copy, the zip or git fails.
 */
export async function commitGoTree(
  dir: string,
  from: string,
  version: string,
  zoneinfo?: string,
): Promise<{ commit: string; created: boolean; changed: boolean }> {
  const created = !(await pathExists(join(dir, '.git')));
  if (created) {
    await mkdir(dir, { recursive: true });
    await git(dir, ['init', '--quiet', '--initial-branch=main']);
  }
  // The tree replaces whatever the last commit had, so files a newer version dropped go too.
  for (const name of treeDirs) await rm(join(dir, name), { recursive: true, force: true });
  for (const name of treeDirs) {
    if (await pathExists(join(from, name))) await cp(join(from, name), join(dir, name), { recursive: true, verbatimSymlinks: true });
  }
  await writeFile(join(dir, 'VERSION'), `${version}\n`);
  const zip = join(dir, 'lib', 'time', 'zoneinfo.zip');
  if (zoneinfo !== undefined && !(await pathExists(zip))) {
    await mkdir(join(dir, 'lib', 'time'), { recursive: true });
    await writeFile(zip, await zoneinfoZip(zoneinfo));
  }
  await git(dir, ['add', '--all']);
  const changed = (await git(dir, ['status', '--porcelain'])).trim() !== '';
  if (changed) await git(dir, ['commit', '--quiet', '--no-verify', '-m', `${version} from ${from}`]);
  return { commit: (await git(dir, ['rev-parse', 'HEAD'])).trim(), created, changed };
}

/**
 * A zip of the zone files under `dir`, as Go's lib/time/zoneinfo.zip holds them: stored, not compressed (Go reads no
 * other method), named by zone (`America/Los_Angeles`), the same bytes in the same order on every run. The `posix/`
 * and `right/` copies and files that are not zones (tables, notes) are left out. Rejects when `dir` cannot be read.
 */
export async function zoneinfoZip(dir: string): Promise<Uint8Array> {
  const files: Record<string, [Uint8Array, { level: 0; mtime: Date }]> = {};
  const epoch = new Date('1980-01-01T00:00:00Z');
  const walk = async (relative: string): Promise<void> => {
    for (const name of (await readdir(join(dir, relative))).sort()) {
      const path = relative === '' ? name : `${relative}/${name}`;
      if (relative === '' && (name === 'posix' || name === 'right')) continue;
      const info = await stat(join(dir, path));
      if (info.isDirectory()) await walk(path);
      else {
        const bytes = await readFile(join(dir, path));
        // Zone files start with the TZif magic; tables and notes beside them do not.
        if (bytes.subarray(0, 4).toString('latin1') === 'TZif') files[path] = [new Uint8Array(bytes), { level: 0, mtime: epoch }];
      }
    }
  };
  await walk('');
  if (Object.keys(files).length === 0) throw new Error(`${dir} holds no zone files (apt-get install tzdata)`);
  return zipSync(files);
}

/** The newest Go tree Debian's golang-<v>-src packages installed, by version. Throws when there is none. */
export async function newestDebianTree(): Promise<string> {
  const names = await readdir('/usr/share').catch(() => [] as string[]);
  const versions = names
    .map((name) => /^go-(\d+)\.(\d+)$/.exec(name))
    .filter((match) => match !== null)
    .sort((a, b) => Number(b[1]) - Number(a[1]) || Number(b[2]) - Number(a[2]));
  for (const match of versions) {
    const tree = join('/usr/share', match[0]);
    if (await pathExists(join(tree, 'src', 'make.bash'))) return tree;
  }
  throw new Error('no Go source tree under /usr/share/go-*: apt-get install golang-1.19-src (Debian 12), or pass --from');
}

/** The tree's VERSION, else that of Debian's toolchain of the same version (/usr/lib/go-<v>/VERSION). Throws when neither says. */
export async function versionOf(tree: string): Promise<string> {
  for (const file of [join(tree, 'VERSION'), join('/usr/lib', tree.split('/').at(-1) ?? '', 'VERSION')]) {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    const version = text?.split('\n')[0]?.trim();
    if (version !== undefined && /^go\d+\.\d+/.test(version)) return version;
  }
  throw new Error(`cannot tell the version of ${tree} (no VERSION file there or in /usr/lib); pass --version go1.X.Y`);
}

function git(cwd: string, args: string[]): Promise<string> {
  return new Promise((done, fail) => {
    execFile('git', args, { cwd, env: { ...process.env, ...identity }, maxBuffer: 64 << 20, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error === null) done(stdout);
      else fail(new Error(`git ${args[0]} in ${cwd} failed: ${stderr.trim() || error.message}`, { cause: error }));
    });
  });
}
