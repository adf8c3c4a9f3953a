// Records how long each `go tool dist test` unit of a real Go tree takes on this machine, as data for the shard
// planner's benchmark. It copies the Go tree that Debian's golang-<v>-src package ships into a temp dir, runs
// `make.bash` once (bootstrapped by Debian's own Go), lists the units, then runs each unit alone the way a shard
// worker would (`go tool dist test -run '^<unit>$'`, from the freshly made tree with an empty build cache), and the
// same for the parts of the `test` directory unit when it is split with GO_TEST_SHARDS.
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, open, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { benchArgs } from './args.ts';
import { describeError } from '../shared/core/errors.ts';

const usage = `Usage: node bench/record-go-durations.ts [options]
  --out FILE           where the JSON goes (default bench/data/go1.19-linux-amd64-2cpu.json)
  --goroot-src DIR     Go tree to copy (default /usr/share/go-1.19, from Debian's golang-1.19-src)
  --bootstrap DIR      GOROOT_BOOTSTRAP for make.bash (default /usr/lib/go-1.19)
  --version-file FILE  the tree's VERSION file, when DIR has none (default: the bootstrap's, if its src is DIR/src)
  --units REGEX        only run units whose name matches (JavaScript RegExp); the listings stay complete
  --shards N           also list with GO_TEST_SHARDS=N and time each test:k_N part (default 10; 0 skips it)
  --keep               keep the temp dir (tree and per-unit logs) and print where it is
  --help               this text
Progress goes to stderr; the JSON is rewritten after every unit, with "complete": false until the end.`;

const values = benchArgs(usage, {
  out: { type: 'string', default: 'bench/data/go1.19-linux-amd64-2cpu.json' },
  'goroot-src': { type: 'string', default: '/usr/share/go-1.19' },
  bootstrap: { type: 'string', default: '/usr/lib/go-1.19' },
  'version-file': { type: 'string' },
  units: { type: 'string' },
  shards: { type: 'string', default: '10' },
  keep: { type: 'boolean', default: false },
});
const shards = Number(values.shards);
if (!Number.isInteger(shards) || shards < 0) {
  process.stderr.write(`record-go-durations: --shards wants a whole number, got ${values.shards}\n`);
  process.exit(2);
}
const unitFilter = values.units === undefined ? undefined : new RegExp(values.units);
const outFile = resolve(values.out);
const srcRoot = resolve(values['goroot-src']);
const bootstrap = resolve(values.bootstrap);

// A unit that hangs past dist's own per-package timeouts (at most 9 minutes, for cmd/go) is recorded as failed.
const unitTimeoutSeconds = 30 * 60;
// What make.bash and dist test read from GOROOT; Debian's package lacks lib/ (zoneinfo comes from tzdata) and keeps
// VERSION beside the binaries, not in the source dir.
const treeDirs = ['src', 'misc', 'test', 'api', 'lib'] as const;

/** One unit's measurement: wall seconds of `go tool dist test -run '^name$'` alone, and whether it exited 0. */
type UnitTiming = { name: string; seconds: number; passed: boolean; failure?: string[] };

type RunResult = { code: number | null; seconds: number; timedOut: boolean };

const startedAt = Date.now();
const since = () => {
  const s = Math.round((Date.now() - startedAt) / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
};
const say = (line: string) => process.stderr.write(`[${since()}] ${line}\n`);

const work = await mkdtemp(join(tmpdir(), 'go-durations-'));
const tree = join(work, 'go');
const logs = join(work, 'logs');
let running: number | undefined;
let outputs = 0;

// The children run in their own process group so that a timeout or an interrupt ends the whole test tree they made.
const stopChild = () => {
  if (running !== undefined) {
    try {
      process.kill(-running, 'SIGKILL');
    } catch {
      // already gone
    }
  }
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    say(`${signal}: stopping`);
    stopChild();
    void rm(work, { recursive: true, force: true }).finally(() => process.exit(130));
  });
}

/** Runs a command to a log file and times it; never throws for a non-zero exit. */
async function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; log: string }): Promise<RunResult> {
  const log = await open(opts.log, 'w');
  try {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', log.fd, log.fd], detached: true });
    running = child.pid;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      stopChild();
    }, unitTimeoutSeconds * 1000);
    const code = await new Promise<number | null>((done, fail) => {
      child.on('error', fail);
      child.on('close', (c) => done(c));
    });
    clearTimeout(timer);
    running = undefined;
    return { code, seconds: (performance.now() - t0) / 1000, timedOut };
  } finally {
    await log.close();
  }
}

/** Runs a short command and returns its stdout; throws with its output when it fails. */
async function output(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<string> {
  outputs++;
  const log = join(logs, `output-${outputs}.out`);
  const errLog = join(logs, `output-${outputs}.err`);
  const out = await open(log, 'w');
  const err = await open(errLog, 'w');
  try {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', out.fd, err.fd] });
    const code = await new Promise<number | null>((done, fail) => {
      child.on('error', fail);
      child.on('close', (c) => done(c));
    });
    if (code !== 0) {
      throw new Error(`${cmd} ${args.join(' ')} exited ${code}: ${await readFile(errLog, 'utf8')}`);
    }
    return await readFile(log, 'utf8');
  } finally {
    await out.close();
    await err.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

// Why a unit failed, from its log: the first lines after dist's environment banner (where a FAIL or a panic's
// reason is; a goroutine dump follows it) and the closing lines, with the temp dir's path made neutral so the data
// file names no machine.
async function failureExcerpt(log: string, head = 16, tail = 4): Promise<string[]> {
  const lines = (await readFile(log, 'utf8'))
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.replaceAll(tree, '$GOROOT').replaceAll(work, '$TMP').slice(0, 400));
  const envEnd = lines.findIndex((l, i) => i > 0 && l.startsWith('##### '));
  const body = lines[0]?.startsWith('##### Test execution environment') && envEnd > 0 ? lines.slice(envEnd) : lines;
  return body.length <= head + tail ? body : [...body.slice(0, head), '...', ...body.slice(-tail)];
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const shellQuote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`);

async function findVersionFile(): Promise<string> {
  if (values['version-file'] !== undefined) return resolve(values['version-file']);
  const own = join(srcRoot, 'VERSION');
  if (await exists(own)) return own;
  // Debian's layout: /usr/lib/go-<v> holds VERSION and links src/ into /usr/share/go-<v>.
  const theirs = join(bootstrap, 'VERSION');
  const sameSrc =
    (await exists(join(bootstrap, 'src'))) && (await realpath(join(bootstrap, 'src'))) === (await realpath(join(srcRoot, 'src')));
  if (sameSrc && (await exists(theirs))) return theirs;
  throw new Error(`no VERSION in ${srcRoot} and the bootstrap's src is not this tree's; pass --version-file`);
}

// dist test picks its own GOCACHE ($GOROOT/pkg/obj/go-build) whatever the env says; inherited GO* settings
// (GOFLAGS, GOMAXPROCS, GO_BUILDER_NAME, GO_TEST_SHARDS...) would change what runs, so none are passed on.
function goEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !/^(GO|CGO_)/.test(key)) env[key] = value;
  }
  return {
    ...env,
    HOME: join(work, 'home'),
    GOCACHE: join(work, 'gocache'),
    GOPATH: join(work, 'nonexist-gopath'),
    GOPROXY: 'off',
    ...extra,
  };
}

let exitCode = 0;
try {
  await mkdir(logs);
  await mkdir(join(work, 'home'));
  await mkdir(dirname(outFile), { recursive: true });

  const versionFile = await findVersionFile();
  const copied: string[] = [];
  say(`copying ${srcRoot} to ${tree}`);
  for (const dir of treeDirs) {
    if (!(await exists(join(srcRoot, dir)))) continue;
    await cp(join(srcRoot, dir), join(tree, dir), { recursive: true, dereference: true });
    copied.push(dir);
  }
  await cp(versionFile, join(tree, 'VERSION'), { dereference: true });
  const sourceVersion = (await readFile(versionFile, 'utf8')).trim();

  const bootstrapVersion = (await output(join(bootstrap, 'bin', 'go'), ['version'], { cwd: work, env: goEnv({}) })).trim();
  say(`make.bash (${sourceVersion}, bootstrap ${bootstrapVersion})`);
  const make = await run('bash', ['make.bash'], {
    cwd: join(tree, 'src'),
    env: goEnv({ GOROOT_BOOTSTRAP: bootstrap }),
    log: join(logs, 'make.log'),
  });
  if (make.code !== 0) {
    throw new Error(`make.bash exited ${make.code}:\n${(await failureExcerpt(join(logs, 'make.log'), 0, 30)).join('\n')}`);
  }
  say(`make.bash took ${make.seconds.toFixed(1)} s`);

  const goBin = join(tree, 'bin', 'go');
  const src = join(tree, 'src');
  const testEnv = goEnv({ GOROOT: tree });
  const [goVersion = '', goos = '', goarch = ''] = (
    await output(goBin, ['env', 'GOVERSION', 'GOOS', 'GOARCH'], { cwd: src, env: testEnv })
  ).split('\n');
  const listUnits = async (env: NodeJS.ProcessEnv) =>
    (await output(goBin, ['tool', 'dist', 'test', '-list'], { cwd: src, env }))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
  const shardEnv = goEnv({ GOROOT: tree, GO_TEST_SHARDS: String(shards) });
  const units = await listUnits(testEnv);
  const shardListing = shards > 0 ? await listUnits(shardEnv) : [];
  const parts = shardListing.filter((u) => u.startsWith('test:'));
  const selected = units.filter((u) => unitFilter === undefined || unitFilter.test(u));
  const selectedParts = parts.filter((u) => unitFilter === undefined || unitFilter.test(u));
  say(`${units.length} units listed, ${selected.length} selected; ${parts.length} test parts with GO_TEST_SHARDS=${shards}`);

  // A shard worker starts from the tree as make.bash left it, whose build cache dist wipes on exit: each unit gets
  // that same empty cache, so no unit is cheaper for running after another.
  const freshCache = () => rm(join(tree, 'pkg', 'obj', 'go-build'), { recursive: true, force: true });

  const timeUnit = async (name: string, env: NodeJS.ProcessEnv, log: string): Promise<UnitTiming> => {
    await freshCache();
    const r = await run(goBin, ['tool', 'dist', 'test', '-run', `^${escapeRegExp(name)}$`], { cwd: src, env, log });
    const passed = r.code === 0 && !r.timedOut;
    const timing: UnitTiming = { name, seconds: Math.round(r.seconds * 100) / 100, passed };
    if (!passed) timing.failure = [...(r.timedOut ? [`(killed after ${unitTimeoutSeconds} s)`] : []), ...(await failureExcerpt(log))];
    return timing;
  };

  // What every unit pays before any test runs: dist's up-to-date check of the toolchain and std/cmd, `go list std
  // cmd` for -run, and the metadata program; measured by a run that selects nothing.
  await freshCache();
  const noop = await run(goBin, ['tool', 'dist', 'test', '-run', '^$'], { cwd: src, env: testEnv, log: join(logs, 'noop.log') });
  say(`a run selecting nothing takes ${noop.seconds.toFixed(1)} s`);

  const timings: UnitTiming[] = [];
  const partTimings: UnitTiming[] = [];
  const sum = (ts: UnitTiming[]) => Math.round(ts.reduce((a, t) => a + t.seconds, 0) * 100) / 100;
  const argv = process.argv.slice(2);
  const save = (complete: boolean) =>
    writeFile(
      outFile,
      `${JSON.stringify(
        {
          goVersion,
          os: goos,
          arch: goarch,
          cpus: availableParallelism(),
          cpuModel: cpus()[0]?.model ?? '',
          recordedAt: new Date(startedAt).toISOString(),
          complete,
          source: { version: sourceVersion, copied, bootstrap: bootstrapVersion.replace(/^go version /, '') },
          command: ['node', relative(process.cwd(), process.argv[1] ?? ''), ...argv].map(shellQuote).join(' '),
          unitCommand: "go tool dist test -run '^<unit>$'  (in $GOROOT/src, empty build cache, GOMAXPROCS unset)",
          makeSeconds: Math.round(make.seconds * 100) / 100,
          noopSeconds: Math.round(noop.seconds * 100) / 100,
          unitCount: units.length,
          listing: units,
          units: timings,
          totalSeconds: sum(timings),
          failed: timings.filter((t) => !t.passed).map((t) => t.name),
          testShards:
            shards > 0
              ? {
                  env: `GO_TEST_SHARDS=${shards}`,
                  listing: shardListing,
                  parts: partTimings,
                  totalSeconds: sum(partTimings),
                  failed: partTimings.filter((t) => !t.passed).map((t) => t.name),
                }
              : null,
        },
        null,
        2,
      )}\n`,
    );

  const all = selected.length + selectedParts.length;
  let i = 0;
  for (const name of selected) {
    i++;
    const t = await timeUnit(name, testEnv, join(logs, `${String(i).padStart(3, '0')}.log`));
    timings.push(t);
    say(`${i}/${all} ${name} ${t.seconds.toFixed(1)} s ${t.passed ? 'ok' : 'FAILED'} (units sum ${(sum(timings) / 60).toFixed(1)} min)`);
    await save(false);
  }
  for (const name of selectedParts) {
    i++;
    const t = await timeUnit(name, shardEnv, join(logs, `${String(i).padStart(3, '0')}.log`));
    partTimings.push(t);
    say(`${i}/${all} ${name} ${t.seconds.toFixed(1)} s ${t.passed ? 'ok' : 'FAILED'} (GO_TEST_SHARDS=${shards})`);
    await save(false);
  }
  await save(true);
  say(`done: ${timings.length} units sum to ${(sum(timings) / 60).toFixed(1)} min; wrote ${outFile}`);
} catch (error) {
  say(`failed: ${describeError(error)}`);
  exitCode = 1;
} finally {
  if (values.keep) say(`kept ${work}`);
  else await rm(work, { recursive: true, force: true });
}
process.exit(exitCode);
