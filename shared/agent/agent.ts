import { spawn, type ChildProcess } from 'node:child_process';
import { openAsBlob } from 'node:fs';
import { chmod, lchown, mkdir, readdir, realpath, rm, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { describeDiskSpace, isDiskFull, measureDiskSpace } from '../core/disk-space.ts';
import type { TaskResult, TaskSpec } from '../core/model/wire.ts';
import { createByteRing } from './byte-ring.ts';
import { createChunkedLog, keptRange, type ChunkedLog } from './chunked-log.ts';
import { goModuleFinding } from './go-findings.ts';
import { createPackageSplitter, packageOutcomes, type PackageClose } from './package-results.ts';
import { putWithRetry } from './put-with-retry.ts';
import { describeFailure } from './upload-retry.ts';
import { packSnapshot } from './snapshot.ts';
import { unpackTarball, UnpackLimitError, type UnpackLimits } from './unpack.ts';

// The agent runs inside workers and is copied into their images: it imports node built-ins, zod (through the wire
// schemas), tar and shared/core/disk-space.ts (built-ins only), and nothing else from the project.

/** One task for the agent to run, and the knobs tests turn. */
export interface AgentOptions {
  spec: TaskSpec;
  /** The worker's scratch directory: the source goes to `${workDir}/src`, a snapshot's `src/` and `home/` to it. */
  workDir: string;
  /** The environment steps start from; the sandbox has already scrubbed it. */
  baseEnv: Record<string, string>;
  /** Fence each step off from the agent (which must then run as root, as in a container); absent: run steps as is. */
  isolateSteps?: StepIsolation;
  now?: () => number;
  /** How long before spec.deadline the steps are stopped, to leave time for uploads. */
  graceMs?: number;
  flushIntervalMs?: number;
}

/**
 * How steps are fenced off from an agent running as root: each runs as `uid`/`gid` with no capabilities (none
 * inheritable, an empty bounding set, no_new_privs), in a fresh PID namespace (so everything it started dies when it
 * ends) and, unless `network`, a fresh network namespace holding only a loopback interface.
 */
export interface StepIsolation {
  uid: number;
  gid: number;
  /** Let steps use the agent's network (a builder that asked for it). */
  network: boolean;
}

type Status = TaskResult['status'];
type StepOutcome = TaskResult['steps'][number];
/** What runTask learns besides the status and steps. */
type Report = Partial<Pick<TaskResult, 'source' | 'snapshot'>>;

/** How long a step that ignored SIGTERM at the soft deadline gets before SIGKILL. */
const termGraceMs = 1000;
/** How long to wait for a step's pipes to close after its group was killed (an escaped process may hold them). */
const drainMs = 1000;
/** What stopping takes at most: SIGTERM's grace, the drain, then the log's last chunk and the result (about a second). */
const finishingMs = termGraceMs + drainMs + 1000;

/**
 * How long before the deadline the steps are stopped: a tenth of the time left, up to 5 s, but never less than
 * stopping takes unless that would eat more than half the time left. A short task on a busy machine (where the agent
 * itself may start a second late) still uploads its timed-out result before the sandbox's hard deadline.
 */
export function finishingGraceMs(remainingMs: number): number {
  const remaining = Math.max(0, remainingMs);
  return Math.floor(Math.min(5000, Math.max(remaining / 10, Math.min(finishingMs, remaining / 2))));
}

/** How much captured output is kept when the spec does not say. */
const defaultOutputBytes = 1 << 20;

/**
 * Runs one task: fetches and unpacks the source (or snapshot), runs the steps in order while streaming the log, packs
 * and uploads a snapshot when asked and every step passed, and uploads the result. Resolves with the uploaded result,
 * whatever the steps did; rejects only when the result itself could not be uploaded.
 */
export async function runAgent(options: AgentOptions): Promise<TaskResult> {
  const { spec } = options;
  const now = options.now ?? Date.now;
  const startedAt = now();
  const graceMs = options.graceMs ?? finishingGraceMs(spec.deadline - startedAt);
  const softDeadline = spec.deadline - graceMs;
  const log = createChunkedLog({
    chunkUrls: spec.log.chunkUrls,
    chunkBytes: spec.log.chunkBytes,
    flushIntervalMs: options.flushIntervalMs ?? 500,
    put: (url, body, what) => putWithRetry(url, body, { what, contentType: 'text/plain; charset=utf-8' }),
  });
  const steps: StepOutcome[] = [];
  const errors: string[] = [];
  const output = createOutputCapture(spec.outputBytes ?? defaultOutputBytes);
  const report: Report = {};

  let status: Status;
  try {
    status = await runTask({ options, now, softDeadline, log, output, steps, errors, report });
  } catch (error) {
    // A bug in the agent, not in the task: say so rather than die without a result.
    status = 'error';
    errors.push(`agent: ${describeFailure(error)}`);
    log.write(`:: hermetic agent failed: ${describeFailure(error)}\n`);
  }

  const summary = await log.close();
  if (summary.error !== undefined) errors.push(summary.error);
  // Each step's range, taken as the log grew, is moved to where its bytes are in the log as cut.
  for (const step of steps) if (step.log !== undefined) step.log = keptRange(step.log, summary.cut);
  const result: TaskResult = {
    v: 1,
    taskId: spec.taskId,
    status,
    startedAt,
    finishedAt: now(),
    steps,
    log: { bytes: summary.bytes, truncated: summary.truncated, chunks: summary.chunks },
    ...output.fields(),
    ...report,
  };
  if (errors.length > 0) result.error = errors.join('; ');
  try {
    await putWithRetry(spec.result.url, JSON.stringify(result), { what: 'result', contentType: 'application/json' });
  } catch (error) {
    throw new Error(`cannot upload the result of task ${spec.taskId}: ${describeFailure(error)}`, { cause: error });
  }
  return result;
}

interface TaskContext {
  options: AgentOptions;
  now: () => number;
  softDeadline: number;
  log: ChunkedLog;
  output: OutputCapture;
  steps: StepOutcome[];
  errors: string[];
  report: Report;
}

async function runTask(context: TaskContext): Promise<Status> {
  const { options, now, softDeadline, log, steps, errors, report } = context;
  const { spec } = options;
  const src = join(options.workDir, 'src');

  const fetchTimeout = AbortSignal.timeout(Math.max(1, softDeadline - now()));
  const fetchStarted = now();
  let fetched = spec.source.layout === 'snapshot' ? 'snapshot' : 'source';
  const modules = spec.goModules;
  const modcache = join(options.workDir, moduleCacheDir);
  try {
    const warn = (message: string) => log.write(`:: tar: ${message}\n`);
    if (spec.source.layout === 'snapshot') {
      await fetchSource(spec.source.url, options.workDir, spec.unpack, fetchTimeout, warn);
      // A make task whose tree was all excluded still hands over a place to run in.
      await mkdir(src, { recursive: true });
    } else {
      await fetchSource(spec.source.url, src, spec.unpack, fetchTimeout, warn);
    }
    if (modules?.url !== undefined) {
      fetched = 'module cache';
      // Packed as the work directory's `gomodcache/`, as a snapshot packs it.
      await fetchSource(modules.url, options.workDir, spec.unpack, fetchTimeout, warn);
    }
    report.source = { seconds: roundSeconds(now() - fetchStarted) };
  } catch (error) {
    if (fetchTimeout.aborted) {
      log.write(`:: deadline reached while fetching the ${fetched}; no step was run\n`);
      return 'timed-out';
    }
    if (error instanceof UnpackLimitError) return overLimit(context, `the ${fetched} ${error.message}; no step was run`);
    const reason = `cannot fetch the ${fetched}: ${describeFailure(error)}`;
    log.write(`:: ${reason}\n`);
    errors.push(reason);
    return 'error';
  }
  if (modules !== undefined) {
    try {
      await mkdir(modcache, { recursive: true });
      // Steps only read the modules they were given: nothing they do can change what the next step builds with.
      if (modules.upload === undefined) await makeReadOnly(modcache);
    } catch (error) {
      const reason = `cannot prepare the module cache: ${describeFailure(error)}`;
      log.write(`:: ${reason}\n`);
      errors.push(reason);
      return 'error';
    }
  }

  const isolation = options.isolateSteps;
  const home = join(options.workDir, 'home');
  if (isolation !== undefined) {
    try {
      await handOver(src, home, isolation, spec.source.layout === 'snapshot');
      // The fetch task's steps write the module cache it uploads.
      if (modules?.upload !== undefined) await chownTree(modcache, isolation.uid, isolation.gid);
    } catch (error) {
      const reason = `cannot hand the source and home to uid ${isolation.uid}: ${describeFailure(error)}`;
      log.write(`:: ${reason}\n`);
      errors.push(reason);
      return 'error';
    }
  }

  // The spec's URLs stay with the agent: steps run untrusted code and get none of them.
  const taskEnv: Record<string, string> = {
    ...options.baseEnv,
    ...(isolation === undefined ? {} : { HOME: home }),
    ...spec.env,
    ...(modules === undefined ? {} : { GOMODCACHE: modcache }),
  };
  const hermeticEnv = { HERMETIC_TASK_ID: spec.taskId, HERMETIC_ATTEMPT: String(spec.attempt) };
  let failed = false;
  for (const step of spec.steps) {
    if (now() >= softDeadline) {
      log.write(`:: deadline reached; not running ${displayCommand(step.argv)} nor the steps after it\n`);
      return 'timed-out';
    }
    let cwd: string;
    try {
      cwd = await stepDirectory(src, step.dir);
    } catch (error) {
      const reason = `cannot run step ${step.name}: ${describeFailure(error)}`;
      log.write(`:: ${reason}\n`);
      errors.push(reason);
      return 'error';
    }
    const argv = isolation === undefined ? step.argv : isolatedArgv(isolation, step.argv);
    const env = { ...taskEnv, ...step.env, ...hermeticEnv };
    const stepContext: StepContext = { cwd, env, log, now, softDeadline };
    if (step.capture === true) stepContext.capture = context.output.sink();
    const ran = await runStep(step, argv, stepContext);
    steps.push(...ran.outcomes);
    if (ran.timedOut) return 'timed-out';
    const failure = ran.outcomes.find((outcome) => outcome.exitCode !== 0);
    if (failure !== undefined && (await fullDisk(context, failure))) return 'error';
    if (failure !== undefined) {
      if (spec.keepGoing !== true) return 'failed';
      failed = true;
    }
  }
  if (failed) return 'failed';
  if (modules?.upload !== undefined) return uploadModuleCache(context, modules.upload);
  return spec.snapshot === undefined ? 'passed' : uploadSnapshot(context, spec.snapshot);
}

/** Where a task's Go module cache is, in its work directory (see TaskSpec.goModules). */
const moduleCacheDir = 'gomodcache';

/** Takes write permission from everything under `dir`: files and directories alike. Links are left as they are. */
async function makeReadOnly(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  await Promise.all(
    entries.map(async (entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return makeReadOnly(path);
      if (entry.isFile()) await chmod(path, (await stat(path)).mode & 0o555);
    }),
  );
  await chmod(dir, 0o555);
}

/**
 * Packs the module cache the fetch task's steps made and PUTs it, leaving out go's VCS checkouts (used only to
 * download). The same limits as a snapshot apply.
 */
async function uploadModuleCache(context: TaskContext, upload: { url: string; maxBytes: number }): Promise<Status> {
  return uploadTree(context, {
    what: 'module cache',
    url: upload.url,
    maxBytes: upload.maxBytes,
    include: [moduleCacheDir],
    exclude: [`${moduleCacheDir}/cache/vcs`],
  });
}

/**
 * Whether the step failed on a full disk: its work directory's file system has (next to) no space or no file left.
 * Then nothing it or a later step did can be trusted to say anything about the commit: the step is marked with what
 * was measured, and the task stops as the machine's failure.
 */
async function fullDisk(context: TaskContext, outcome: StepOutcome): Promise<boolean> {
  const space = await measureDiskSpace(context.options.workDir);
  if (space === undefined || !isDiskFull(space)) return false;
  outcome.diskFull = space;
  const reason = `the worker's disk is full: ${describeDiskSpace(space)}; step ${outcome.name} failed there, and no later step was run`;
  context.log.write(`:: ${reason}\n`);
  context.errors.push(reason);
  return true;
}

/**
 * The directory a step runs in: `dir` under `src`. The spec's path was checked to be relative, but a link in the
 * tree could still lead out of it; throws when the resolved path is outside `src` or not a directory.
 */
async function stepDirectory(src: string, dir: string | undefined): Promise<string> {
  if (dir === undefined) return src;
  const root = await realpath(src);
  let resolved: string;
  try {
    resolved = await realpath(join(src, dir));
  } catch (error) {
    throw new Error(`directory ${JSON.stringify(dir)} is not in the source`, { cause: error });
  }
  const inside = relative(root, resolved);
  if (inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) {
    throw new Error(`directory ${JSON.stringify(dir)} leads outside the source`);
  }
  if (!(await stat(resolved)).isDirectory()) throw new Error(`${JSON.stringify(dir)} is not a directory`);
  return resolved;
}

/**
 * Packs `src/` (less the excluded paths), `home/` and the module cache of the work directory, those that exist, and
 * PUTs the snapshot.
 */
async function uploadSnapshot(context: TaskContext, snapshot: NonNullable<TaskSpec['snapshot']>): Promise<Status> {
  const { workDir } = context.options;
  const present = await Promise.all(['home', moduleCacheDir].map((dir) => stat(join(workDir, dir)).then((stats) => (stats.isDirectory() ? [dir] : []), () => [])));
  return uploadTree(context, {
    what: 'snapshot',
    url: snapshot.url,
    maxBytes: snapshot.maxBytes,
    include: ['src', ...present.flat()],
    exclude: snapshot.exclude.map((path) => `src/${path}`),
  });
}

interface TreeUpload {
  what: 'snapshot' | 'module cache';
  url: string;
  maxBytes: number;
  /** Entries of the work directory to pack, and paths under them to leave out. */
  include: string[];
  exclude: string[];
}

/**
 * Packs part of the work directory and PUTs the tarball, streaming it from disk. Returns 'passed' once it landed,
 * 'failed' when it is over a limit (its packed size, or what it would unpack to), and 'error' when it could not be
 * packed or uploaded, with the reason noted.
 */
async function uploadTree(context: TaskContext, tree: TreeUpload): Promise<Status> {
  const { options, now, log, errors, report } = context;
  const { what } = tree;
  // Outside what is packed, so the tarball is not packed into itself.
  const file = join(options.workDir, 'upload.tar.gz');
  const fail = (reason: string): Status => {
    log.write(`:: ${reason}\n`);
    errors.push(reason);
    return 'error';
  };
  try {
    let packed: Awaited<ReturnType<typeof packSnapshot>>;
    try {
      packed = await packSnapshot(options.workDir, file, { include: tree.include, exclude: tree.exclude });
    } catch (error) {
      return fail(`cannot pack the ${what}: ${describeFailure(error)}`);
    }
    const { unpack } = options.spec;
    if (packed.bytes > tree.maxBytes) {
      return overLimit(context, `${what} not uploaded: it is ${packed.bytes} bytes, over its limit of ${tree.maxBytes} bytes`);
    }
    // The tasks that use it would refuse to unpack it.
    if (packed.unpackedBytes > unpack.maxBytes) {
      return overLimit(context, `${what} not uploaded: it unpacks to ${packed.unpackedBytes} bytes, over its limit of ${unpack.maxBytes} bytes`);
    }
    if (packed.files > unpack.maxEntries) {
      return overLimit(context, `${what} not uploaded: it holds ${packed.files} entries, over its limit of ${unpack.maxEntries}`);
    }
    const uploadStarted = now();
    try {
      await putWithRetry(tree.url, await openAsBlob(file), { what, contentType: 'application/gzip' });
    } catch (error) {
      return fail(`cannot upload the ${what}: ${describeFailure(error)}`);
    }
    const uploadSeconds = roundSeconds(now() - uploadStarted);
    const packSeconds = roundSeconds(packed.seconds * 1000);
    if (what === 'snapshot') report.snapshot = { bytes: packed.bytes, files: packed.files, packSeconds, uploadSeconds };
    log.write(
      `:: ${what}: ${(packed.bytes / 1e6).toFixed(1)} MB, ${packed.files} files, ` +
        `packed in ${packSeconds.toFixed(1)}s, uploaded in ${uploadSeconds.toFixed(1)}s\n`,
    );
    return 'passed';
  } finally {
    await rm(file, { force: true });
  }
}

/**
 * Ends a task whose tree is over one of its size limits: the source, or the snapshot of what the make step built.
 * Either is the commit's tree, or what the commit's own steps made of it, measured against limits the project set;
 * any other worker would find the same bytes. So it is the commit's `failed`, not an `error` that would blame (and
 * retry) the machine: a verdict is the commit's, never the machine's (ARCHITECTURE.md). The reason names the limit.
 */
function overLimit(context: TaskContext, reason: string): Status {
  context.log.write(`:: ${reason}\n`);
  context.errors.push(reason);
  return 'failed';
}

/** Milliseconds as seconds, to the millisecond. */
function roundSeconds(ms: number): number {
  return Math.round(ms) / 1000;
}

/** The stdout of capture steps, kept up to a budget for the result's `output`. */
interface OutputCapture {
  /** A writer for one capture step; that a step was captured is itself reported, even if it printed nothing. */
  sink(): (data: Buffer) => void;
  /** The result's `output` and `outputTruncated`; empty when no capture step ran. */
  fields(): Pick<TaskResult, 'output' | 'outputTruncated'>;
}

function createOutputCapture(limit: number): OutputCapture {
  const parts: Buffer[] = [];
  let bytes = 0;
  let truncated = false;
  let used = false;
  const write = (data: Buffer) => {
    const room = limit - bytes;
    if (data.length > room) truncated = true;
    const kept = data.length > room ? data.subarray(0, room) : data;
    if (kept.length === 0) return;
    parts.push(Buffer.from(kept));
    bytes += kept.length;
  };
  return {
    sink() {
      used = true;
      return write;
    },
    fields() {
      if (!used) return {};
      const output = Buffer.concat(parts).toString('utf8');
      return truncated ? { output, outputTruncated: true } : { output };
    },
  };
}

/**
 * Streams the tarball at `url` into `dest` within `limits` (see unpackTarball). On failure nothing it unpacked is
 * left, nor `dest` when it made it.
 */
async function fetchSource(
  url: string,
  dest: string,
  limits: UnpackLimits,
  signal: AbortSignal,
  warn: (message: string) => void,
): Promise<void> {
  const made = await mkdir(dest, { recursive: true });
  try {
    const response = await fetch(url, { signal });
    if (!response.ok || response.body === null) {
      await response.body?.cancel().catch(() => undefined);
      throw new Error(`download failed: HTTP ${response.status}`);
    }
    await unpackTarball(Readable.fromWeb(response.body as WebReadableStream<Uint8Array>), dest, limits, warn);
  } catch (error) {
    if (made !== undefined) await rm(made, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Gives the unpacked tree and `home` to the steps' user: a snapshot's home (unpacked whole, as root) holds files
 * the steps write to, a build cache. Otherwise home is the image's, already the user's with its warm build cache;
 * only the directory itself is handed over, as chowning every file of an image layer would copy each one up.
 * Links are changed, never followed.
 */
async function handOver(src: string, home: string, isolation: StepIsolation, homeFromSnapshot: boolean): Promise<void> {
  await mkdir(home, { recursive: true });
  if (homeFromSnapshot) await chownTree(home, isolation.uid, isolation.gid);
  else await lchown(home, isolation.uid, isolation.gid);
  await chownTree(src, isolation.uid, isolation.gid);
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  await Promise.all(
    entries.map((entry) => {
      const path = join(dir, entry.name);
      return entry.isDirectory() ? chownTree(path, uid, gid) : lchown(path, uid, gid);
    }),
  );
  await lchown(dir, uid, gid);
}

/**
 * `argv` wrapped to run isolated. util-linux does the work: `unshare` (needs CAP_SYS_ADMIN) makes the namespaces
 * and forks the step as PID 1 of its own namespace; `setpriv` drops to the user (CAP_SETUID, CAP_SETGID) and empties
 * the bounding set, which needs CAP_SETPCAP: without it setpriv silently leaves the bounding set as it was. A fresh
 * network namespace starts with its loopback down, so tests that listen on 127.0.0.1 could not connect: iproute2
 * brings it up first (CAP_NET_ADMIN, still root's in the new namespace), then the shell execs setpriv with the argv
 * as its own arguments, never as shell text.
 */
export function isolatedArgv(isolation: StepIsolation, argv: readonly string[]): string[] {
  const drop = [
    'setpriv',
    `--reuid=${isolation.uid}`,
    `--regid=${isolation.gid}`,
    '--clear-groups',
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--no-new-privs',
    '--',
    ...argv,
  ];
  if (isolation.network) return ['unshare', '--pid', '--fork', '--', ...drop];
  return ['unshare', '--net', '--pid', '--fork', '--', 'sh', '-c', 'ip link set dev lo up && exec "$@"', 'hermetic-step', ...drop];
}

interface StepContext {
  cwd: string;
  env: Record<string, string>;
  log: ChunkedLog;
  now: () => number;
  softDeadline: number;
  /** Takes the step's stdout instead of the log. */
  capture?: (data: Buffer) => void;
}

/**
 * Runs one step (as `argv`) in its own process group and kills the group when the step ends; its outcome holds the
 * range of the log between its header and footer lines. A step of several units has one outcome per unit instead,
 * each with its share of that range (see packageOutcomes). Never rejects.
 */
function runStep(
  step: TaskSpec['steps'][number],
  argv: readonly string[],
  context: StepContext,
): Promise<{ outcomes: StepOutcome[]; timedOut: boolean }> {
  const { log, now } = context;
  const command = displayCommand(step.argv);
  const started = now();
  log.write(`:: Running ${command}\n`);
  const logStart = log.written();
  const splitter = step.units === undefined ? undefined : createPackageSplitter(step.units, now);
  const closes: PackageClose[] = [];

  return new Promise((resolve) => {
    let timedOut = false;
    let settled = false;
    let notFound: string | undefined;
    const tail = createByteRing(notFoundTailBytes);
    let termTimer: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;

    const finish = (exitCode: number | null, signal: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(termTimer);
      clearTimeout(killTimer);
      const durationMs = Math.max(0, Math.round(now() - started));
      const seconds = (durationMs / 1000).toFixed(1);
      const range = { start: logStart, end: log.written() };
      // The exit line is short enough for a cut log's tail to keep whole, whatever the command's length.
      const shown = command.length > maxShownCommand ? `${command.slice(0, maxShownCommand - 3)}...` : command;
      log.write(
        signal === null
          ? `:: ${shown} exited ${exitCode} after ${seconds}s\n`
          : `:: ${shown} killed by ${signal} after ${seconds}s\n`,
      );
      const outcome: StepOutcome = { name: step.name, exitCode, durationMs, log: range };
      if (signal !== null) outcome.signal = signal;
      // 127 is the shell's "command not found": say which, so the verdict can blame the machine, not the commit.
      const missing = exitCode === 127 ? (notFound ?? programNotFoundIn(tail.contents().toString('utf8'))) : undefined;
      if (missing !== undefined) outcome.missing = missing;
      const finding = exitCode === 0 ? undefined : goModuleFinding(tail.contents().toString('utf8'), step.fetchesModules === true);
      if (finding !== undefined) outcome.finding = finding;
      if (step.units === undefined) {
        resolve({ outcomes: [outcome], timedOut });
        return;
      }
      const outcomes = packageOutcomes(step.units, closes, { exitCode, signal, timedOut, startedAt: started, endedAt: started + durationMs, log: range });
      // What the agent learned of the process (a missing program, a finding) goes with the units that took its exit code.
      for (const unit of outcomes.filter((each) => each.exitCode === exitCode && exitCode !== 0)) {
        if (missing !== undefined) unit.missing = missing;
        if (finding !== undefined) unit.finding = finding;
      }
      resolve({ outcomes, timedOut });
    };

    const [program = '', ...args] = argv;
    let child: ChildProcess;
    try {
      child = spawn(program, args, {
        cwd: context.cwd,
        env: context.env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (error) {
      log.write(`:: cannot run ${command}: ${describeFailure(error)}\n`);
      finish(126, null);
      return;
    }

    const stdout =
      context.capture ??
      ((data: Buffer) => {
        const offset = log.written();
        log.write(data);
        if (splitter !== undefined) closes.push(...splitter.push(data, offset));
      });
    child.stdout?.on('data', (data: Buffer) => {
      tail.push(data);
      stdout(data);
    });
    child.stderr?.on('data', (data: Buffer) => {
      tail.push(data);
      log.write(data);
    });

    child.on('error', (error: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) return;
      // Shell conventions: 127 for a program that is not there, 126 for one that cannot be run.
      const missing = error.code === 'ENOENT';
      if (missing) notFound = program;
      log.write(
        missing
          ? `:: cannot run ${command}: program ${JSON.stringify(program)} not found (ENOENT)\n`
          : `:: cannot run ${command}: ${describeFailure(error)}\n`,
      );
      finish(missing ? 127 : 126, null);
    });

    child.on('exit', (code, signal) => {
      const pid = child.pid;
      // Background children of the step die with it.
      if (pid !== undefined) killGroup(pid, 'SIGKILL');
      const streams = [child.stdout, child.stderr].filter((stream) => stream !== null);
      const drained = Promise.all(
        streams.map((stream) =>
          stream.readableEnded || stream.destroyed ? undefined : new Promise((done) => stream.once('close', done)),
        ),
      );
      // A process that left the group may hold the pipes open; its output after that is not the step's.
      const giveUp = setTimeout(() => {
        for (const stream of streams) stream.destroy();
      }, drainMs);
      void drained.then(() => {
        clearTimeout(giveUp);
        finish(code, signal);
      });
    });

    const pid = child.pid;
    if (pid === undefined) return;
    termTimer = setTimeout(
      () => {
        timedOut = true;
        log.write(`:: ${command} timed out: the task's deadline is near; stopping it (SIGTERM, then SIGKILL)\n`);
        killGroup(pid, 'SIGTERM');
        killTimer = setTimeout(() => killGroup(pid, 'SIGKILL'), termGraceMs);
      },
      Math.max(0, context.softDeadline - now()),
    );
  });
}

/** The longest command an exit line shows, as a step's name is at most 200 characters. */
const maxShownCommand = 200;

/** How much of a step's last output is searched for the program a shell did not find. */
const notFoundTailBytes = 4096;

/** How shells and exec wrappers say a program is not there; the group is the program. */
const notFoundPatterns = [
  // dash `sh: 1: go: not found`, bash `bash: line 1: go: command not found`, `./x.sh: 3: go: not found`
  /^(?:[^\n]*?: )?(?:line \d+: |\d+: )?([^\s:'"]+): (?:command )?not found$/gm,
  // util-linux (unshare, setpriv): `setpriv: failed to execute go: No such file or directory`
  /failed to execute ([^\s:]+): No such file or directory/g,
  // coreutils env: `env: 'go': No such file or directory`, with ASCII or typographic quotes
  /env: ['\u2018]?([^\s:'\u2019]+)['\u2019]?: No such file or directory/g,
];

/** The program the last "not found" message in `output` names, if any does. */
export function programNotFoundIn(output: string): string | undefined {
  let last: { at: number; program: string } | undefined;
  for (const pattern of notFoundPatterns) {
    for (const match of output.matchAll(pattern)) {
      const program = match[1];
      if (program !== undefined && (last === undefined || match.index >= last.at)) last = { at: match.index, program };
    }
  }
  return last?.program;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already empty.
  }
}

/** The argv as a shell would show it: plain words bare, anything else single-quoted. */
export function displayCommand(argv: readonly string[]): string {
  return argv
    .map((arg) => (/^[A-Za-z0-9_./=:@%+,-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`))
    .join(' ');
}
