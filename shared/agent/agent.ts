import { spawn, type ChildProcess } from 'node:child_process';
import { chown, lchown, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { x as extractTar } from 'tar';
import type { TaskResult, TaskSpec } from '../model/wire.ts';
import { createChunkedLog, type ChunkedLog } from './chunked-log.ts';
import { describeFailure, putWithRetry } from './put-with-retry.ts';

// The agent runs inside workers and is copied into their images: it imports node built-ins, zod (through the wire
// schemas) and tar, and nothing else from the project.

/** One task for the agent to run, and the knobs tests turn. */
export interface AgentOptions {
  spec: TaskSpec;
  /** The worker's scratch directory; the source goes to `${workDir}/src`. */
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

/** How long a step that ignored SIGTERM at the soft deadline gets before SIGKILL. */
const termGraceMs = 1000;
/** How long to wait for a step's pipes to close after its group was killed (an escaped process may hold them). */
const drainMs = 1000;

/**
 * Runs one task: fetches and unpacks the source, runs the steps in order while streaming the log, and uploads the
 * result. Resolves with the uploaded result, whatever the steps did; rejects only when the result itself could not
 * be uploaded.
 */
export async function runAgent(options: AgentOptions): Promise<TaskResult> {
  const { spec } = options;
  const now = options.now ?? Date.now;
  const startedAt = now();
  const graceMs = options.graceMs ?? Math.min(5000, Math.max(0, Math.floor((spec.deadline - startedAt) / 10)));
  const softDeadline = spec.deadline - graceMs;
  const log = createChunkedLog({
    chunkUrls: spec.log.chunkUrls,
    chunkBytes: spec.log.chunkBytes,
    flushIntervalMs: options.flushIntervalMs ?? 500,
    put: (url, body, what) => putWithRetry(url, body, { what, contentType: 'text/plain; charset=utf-8' }),
  });
  const steps: StepOutcome[] = [];
  const errors: string[] = [];

  let status: Status;
  try {
    status = await runTask({ options, now, softDeadline, log, steps, errors });
  } catch (error) {
    // A bug in the agent, not in the task: say so rather than die without a result.
    status = 'error';
    errors.push(`agent: ${describeFailure(error)}`);
    log.write(`:: hermetic agent failed: ${describeFailure(error)}\n`);
  }

  const summary = await log.close();
  if (summary.error !== undefined) errors.push(summary.error);
  const result: TaskResult = {
    v: 1,
    taskId: spec.taskId,
    status,
    startedAt,
    finishedAt: now(),
    steps,
    log: { bytes: summary.bytes, truncated: summary.truncated, chunks: summary.chunks },
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
  steps: StepOutcome[];
  errors: string[];
}

async function runTask(context: TaskContext): Promise<Status> {
  const { options, now, softDeadline, log, steps, errors } = context;
  const { spec } = options;
  const src = join(options.workDir, 'src');

  const fetchTimeout = AbortSignal.timeout(Math.max(1, softDeadline - now()));
  try {
    await fetchSource(spec.source.url, src, fetchTimeout, (message) => log.write(`:: tar: ${message}\n`));
  } catch (error) {
    if (fetchTimeout.aborted) {
      log.write(':: deadline reached while fetching the source; no step was run\n');
      return 'timed-out';
    }
    const reason = `cannot fetch the source: ${describeFailure(error)}`;
    log.write(`:: ${reason}\n`);
    errors.push(reason);
    return 'error';
  }

  const isolation = options.isolateSteps;
  const home = join(options.workDir, 'home');
  if (isolation !== undefined) {
    try {
      await handOver(src, home, isolation);
    } catch (error) {
      const reason = `cannot hand the source and home to uid ${isolation.uid}: ${describeFailure(error)}`;
      log.write(`:: ${reason}\n`);
      errors.push(reason);
      return 'error';
    }
  }

  // The spec's URLs stay with the agent: steps run untrusted code and get none of them.
  const env: Record<string, string> = {
    ...options.baseEnv,
    ...(isolation === undefined ? {} : { HOME: home }),
    ...spec.env,
    HERMETIC_TASK_ID: spec.taskId,
    HERMETIC_ATTEMPT: String(spec.attempt),
  };
  for (const step of spec.steps) {
    if (now() >= softDeadline) {
      log.write(`:: deadline reached; not running ${displayCommand(step.argv)} nor the steps after it\n`);
      return 'timed-out';
    }
    const argv = isolation === undefined ? step.argv : isolatedArgv(isolation, step.argv);
    const ran = await runStep(step, argv, { cwd: src, env, log, now, softDeadline });
    steps.push(ran.outcome);
    if (ran.timedOut) return 'timed-out';
    if (ran.outcome.exitCode !== 0) return 'failed';
  }
  return 'passed';
}

/**
 * Streams the tarball at `url` into `dest`. tar keeps every entry inside: absolute paths are made relative, and
 * `..` entries, escaping links and writes through links are skipped with a warning.
 */
async function fetchSource(
  url: string,
  dest: string,
  signal: AbortSignal,
  warn: (message: string) => void,
): Promise<void> {
  await mkdir(dest, { recursive: true });
  const response = await fetch(url, { signal });
  if (!response.ok || response.body === null) {
    await response.body?.cancel().catch(() => undefined);
    throw new Error(`download failed: HTTP ${response.status}`);
  }
  const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
  const unpack = extractTar({
    cwd: dest,
    // Files belong to whoever runs the agent, not to the uids recorded in the archive.
    preserveOwner: false,
    onwarn: (_code, message, data) => warn(entryPath(data) === undefined ? message : `${entryPath(data)}: ${message}`),
  });
  await new Promise<void>((resolve, reject) => {
    const fail = (error: unknown) => {
      body.destroy();
      reject(new Error(`extract failed: ${describeFailure(error)}`, { cause: error }));
    };
    body.on('error', (error) => {
      unpack.abort(error);
      reject(new Error(`download failed: ${describeFailure(error)}`, { cause: error }));
    });
    unpack.on('error', fail);
    unpack.on('close', () => resolve());
    body.pipe(unpack);
  });
}

/** Makes `home` and gives it and the whole unpacked tree to the steps' user; links are changed, never followed. */
async function handOver(src: string, home: string, isolation: StepIsolation): Promise<void> {
  await mkdir(home, { recursive: true });
  await chown(home, isolation.uid, isolation.gid);
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
 * the bounding set, which needs CAP_SETPCAP: without it setpriv silently leaves the bounding set as it was.
 */
export function isolatedArgv(isolation: StepIsolation, argv: readonly string[]): string[] {
  return [
    'unshare',
    ...(isolation.network ? [] : ['--net']),
    '--pid',
    '--fork',
    '--',
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
}

/** The archive path a tar warning is about, as it was in the archive. */
function entryPath(data: Record<string, unknown>): string | undefined {
  if (typeof data.path === 'string') return data.path;
  const entry = data.entry;
  if (typeof entry !== 'object' || entry === null || !('path' in entry)) return undefined;
  return typeof entry.path === 'string' ? entry.path : undefined;
}

interface StepContext {
  cwd: string;
  env: Record<string, string>;
  log: ChunkedLog;
  now: () => number;
  softDeadline: number;
}

/** Runs one step (as `argv`) in its own process group and kills the group when the step ends. Never rejects. */
function runStep(
  step: TaskSpec['steps'][number],
  argv: readonly string[],
  context: StepContext,
): Promise<{ outcome: StepOutcome; timedOut: boolean }> {
  const { log, now } = context;
  const command = displayCommand(step.argv);
  const started = now();
  log.write(`:: Running ${command}\n`);

  return new Promise((resolve) => {
    let timedOut = false;
    let settled = false;
    let termTimer: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;

    const finish = (exitCode: number | null, signal: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(termTimer);
      clearTimeout(killTimer);
      const durationMs = Math.max(0, Math.round(now() - started));
      const seconds = (durationMs / 1000).toFixed(1);
      log.write(
        signal === null
          ? `:: ${command} exited ${exitCode} after ${seconds}s\n`
          : `:: ${command} killed by ${signal} after ${seconds}s\n`,
      );
      const outcome: StepOutcome = { name: step.name, exitCode, durationMs };
      if (signal !== null) outcome.signal = signal;
      resolve({ outcome, timedOut });
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

    child.stdout?.on('data', (data: Buffer) => log.write(data));
    child.stderr?.on('data', (data: Buffer) => log.write(data));

    child.on('error', (error: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) return;
      // Shell conventions: 127 for a program that is not there, 126 for one that cannot be run.
      const missing = error.code === 'ENOENT';
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
