import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, readlink, rm, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Compute, OnWorkerExit, WorkerExit, WorkerInfo, WorkerRequest } from '../../ports/compute.ts';
import { silentLogger, type Logger } from '../../ports/log.ts';
import { atDeadline, type DeadlineTimer } from '../deadline-timer.ts';
import { stopWithGrace } from '../stop-with-grace.ts';
import { programsNotOnPath } from './programs-on-path.ts';
import { describeError } from '../../core/errors.ts';

/** How a worker's processes are held together so that all of them can be killed. */
export type Isolation = 'pid-namespace' | 'process-group';

/** What the process sandbox is built from. */
export interface ProcessSandboxOptions {
  /**
   * Each task gets `${workRoot}/${taskId}`; the directory stays (emptied) as a record that the task had a worker.
   * Directories a previous run left full (it was killed) are emptied when the sandbox is created.
   */
  workRoot: string;
  onExit: OnWorkerExit;
  logger?: Logger;
  /** `auto`: a PID namespace where the host allows one, else process groups. */
  isolation?: 'auto' | Isolation;
  /** The agent program; `--workdir DIR` is appended. Defaults to this Node running shared/agent/main.ts. */
  agentCommand?: string[];
  /** Keep each worker's files (source, home, agent.log) after it exits, for debugging. */
  keepWorkDirs?: boolean;
  /**
   * Most workers running at once (default: twice the cores). Later starts are accepted and wait, in order, for one
   * to end; they count as workers (listed, stoppable, ended at their deadline). Without a bound a burst of tasks
   * starts a process each at once and exhausts the machine's memory and this process's file descriptors.
   */
  maxWorkers?: number;
}

/** A Compute that also says which isolation it settled on. */
export type ProcessSandbox = Compute & { readonly isolation: Isolation };

const hostType = 'host';
/** Workers find their programs where this process does: the host's own tools. */
const workerPath = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';
const pidNamespaceWrapper = [
  'setpriv',
  '--pdeathsig',
  'KILL',
  '--',
  'unshare',
  '--pid',
  '--fork',
  '--kill-child',
  '--mount-proc',
  '--',
];
/** The default bound on workers running at once. */
export const defaultMaxWorkers = Math.max(2, 2 * availableParallelism());
/** How long to keep killing a worker's leftover processes before giving up and reporting them. */
const reapTimeoutMs = 10_000;

interface Worker {
  request: WorkerRequest;
  child: ChildProcess;
  dir: string;
  /** The worker's PID namespace, once known: its name (`pid:[inode]`) and an open descriptor that pins it. */
  namespace?: { name: string; pin: FileHandle };
  killReason?: WorkerExit['reason'];
  /** Stopped by its owner (its result is in): an exit then is expected, not a warning. */
  stopRequested?: boolean;
  deadlineTimer?: DeadlineTimer;
  /** Settles after onExit was called. */
  gone: Promise<void>;
}

/**
 * Compute on this machine: one agent process per task, with a scrubbed environment, in a fresh PID namespace where
 * the host allows it (else its own process group plus an environment marker), killed at the deadline with
 * everything it started. Rejects when the requested isolation is not available.
 */
export async function createProcessSandbox(options: ProcessSandboxOptions): Promise<ProcessSandbox> {
  const logger = options.logger ?? silentLogger;
  const { workRoot, onExit } = options;
  await mkdir(workRoot, { recursive: true });
  if (options.keepWorkDirs !== true) await emptyLeftWorkDirs(workRoot, logger);
  const isolation = await chooseIsolation(options.isolation ?? 'auto');
  logger.info('sandbox.isolation', { isolation });
  const agentCommand = options.agentCommand ?? [
    process.execPath,
    fileURLToPath(new URL('../../agent/main.ts', import.meta.url)),
  ];
  const hostNamespace = isolation === 'pid-namespace' ? await readlink('/proc/self/ns/pid') : undefined;

  const workers = new Map<string, Worker>();
  /** Launches in flight, with their requests: workers too, though not yet in `workers`. */
  const starting = new Map<Promise<void>, WorkerRequest>();
  const maxWorkers = options.maxWorkers ?? defaultMaxWorkers;
  /** Accepted starts waiting for a free place, oldest first. */
  const waiting = new Map<string, { request: WorkerRequest; dir: string; deadlineTimer: DeadlineTimer }>();
  let closed = false;

  async function start(request: WorkerRequest): Promise<void> {
    if (closed) throw new Error('the process sandbox is closed');
    if (request.hostType !== hostType) {
      throw new Error(`the process sandbox cannot run host type "${request.hostType}"; it runs only "${hostType}"`);
    }
    const { taskId } = request;
    if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(taskId)) throw new Error(`unsafe task ID ${JSON.stringify(taskId)}`);
    if (workers.has(taskId) || waiting.has(taskId)) {
      logger.info('worker.duplicate-start', { taskId });
      return;
    }
    const dir = join(workRoot, taskId);
    try {
      // The exclusive mkdir is the idempotency record: it survives a restart of this process.
      await mkdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        logger.info('worker.duplicate-start', { taskId, dir });
        return;
      }
      throw error;
    }
    if (waiting.size > 0 || workers.size + starting.size >= maxWorkers) {
      const deadlineTimer = atDeadline(request.deadline, () => endWaiting(taskId, 'deadline'));
      waiting.set(taskId, { request, dir, deadlineTimer });
      logger.info('worker.waiting', { taskId, running: workers.size + starting.size, waiting: waiting.size });
      return;
    }
    await track(launch(request, dir), request);
  }

  async function track(launching: Promise<void>, request: WorkerRequest): Promise<void> {
    starting.set(launching, request);
    try {
      await launching;
    } finally {
      starting.delete(launching);
    }
  }

  /** Starts the oldest waiting workers while there is room. A start that fails reports its worker vanished. */
  function startWaiting(): void {
    for (const [taskId, next] of waiting) {
      if (closed || workers.size + starting.size >= maxWorkers) return;
      waiting.delete(taskId);
      next.deadlineTimer.cancel();
      void track(launch(next.request, next.dir), next.request).catch((error: unknown) => {
        logger.error('worker.start-failed', { taskId, error: describeError(error) });
        report({ taskId, reason: 'vanished', code: null, signal: null });
      });
    }
  }

  /** Ends a start that never ran: at its deadline, stopped, or closed. */
  function endWaiting(taskId: string, reason: WorkerExit['reason']): void {
    const entry = waiting.get(taskId);
    if (entry === undefined) return;
    waiting.delete(taskId);
    entry.deadlineTimer.cancel();
    logger.info('worker.exited', { taskId, reason, code: null, signal: null, waited: true });
    report({ taskId, reason, code: null, signal: null });
  }

  function report(exit: WorkerExit): void {
    try {
      onExit(exit);
    } catch (error) {
      logger.error('worker.on-exit-failed', { taskId: exit.taskId, error: describeError(error) });
    }
  }

  async function launch(request: WorkerRequest, dir: string): Promise<void> {
    const { taskId } = request;
    const env: Record<string, string> = {
      PATH: workerPath,
      HOME: join(dir, 'home'),
      TMPDIR: join(dir, 'tmp'),
      LANG: 'C.UTF-8',
      // The worker's directory: unique to this work root and task, so two deployments never share a marker.
      HERMETIC_WORKER: dir,
    };
    const agent = [...agentCommand, '--workdir', dir];
    // In a PID namespace the agent is its init: when the agent exits, the kernel kills everything left in it; and
    // pdeathsig plus --kill-child take the agent down with this process if it dies.
    const argv = isolation === 'pid-namespace' ? [...pidNamespaceWrapper, ...agent] : agent;
    let agentLog: FileHandle | undefined;
    let child: ChildProcess;
    let exited: Promise<[number | null, NodeJS.Signals | null]>;
    try {
      await mkdir(join(dir, 'home'));
      await mkdir(join(dir, 'tmp'));
      agentLog = await open(join(dir, 'agent.log'), 'a');
      const spawned = spawn(argv[0] ?? '', argv.slice(1), {
        cwd: dir,
        env,
        detached: true,
        stdio: ['pipe', agentLog.fd, agentLog.fd],
      });
      exited = new Promise((resolve) => spawned.once('exit', (code, signal) => resolve([code, signal])));
      await new Promise<void>((resolve, reject) => {
        spawned.once('spawn', resolve);
        spawned.once('error', reject);
      });
      child = spawned;
    } catch (error) {
      // Nothing runs, so the task never had a worker: free the record so a retry can start one.
      await rm(dir, { recursive: true, force: true });
      throw new Error(`cannot start a worker for task ${taskId}: ${describeError(error)}`, { cause: error });
    } finally {
      await agentLog?.close();
    }

    child.on('error', (error) => logger.warn('worker.process-error', { taskId, error: error.message }));
    const worker: Worker = { request, child, dir, gone: Promise.resolve() };
    worker.gone = exited.then(([code, signal]) => finish(worker, code, signal));
    workers.set(taskId, worker);
    child.stdin?.on('error', () => {
      // EPIPE: the agent died before reading its spec; its exit tells the rest.
    });
    child.stdin?.end(JSON.stringify(request.spec));
    worker.deadlineTimer = atDeadline(request.deadline, () => void kill(worker, 'deadline'));
    if (hostNamespace !== undefined) void learnNamespace(worker, hostNamespace);
    logger.info('worker.started', { taskId, pid: child.pid ?? null, isolation });
    if (closed) void kill(worker, 'exited');
  }

  /**
   * Polls until the unshare process has made its namespace, and keeps it open, to find every process in it later.
   * The kernel gives a freed namespace's number to the next new one at once, so a number alone could name another
   * worker's namespace by the time this one is reaped; an open descriptor keeps the namespace, and so its number,
   * this worker's until finish closes it.
   */
  async function learnNamespace(worker: Worker, host: string): Promise<void> {
    const pid = worker.child.pid;
    for (let i = 0; i < 400 && unreaped(worker.child); i++) {
      let pin: FileHandle;
      let name: string;
      try {
        pin = await open(`/proc/${pid}/ns/pid_for_children`, 'r');
        name = `pid:[${(await pin.stat({ bigint: true })).ino}]`;
      } catch {
        return;
      }
      // Still unreaped now, so the pid was still our unshare's when it was opened, and finish has not begun.
      if (name !== host && unreaped(worker.child)) {
        worker.namespace = { name, pin };
        return;
      }
      await pin.close();
      await sleep(5);
    }
  }

  function kill(worker: Worker, reason: WorkerExit['reason']): Promise<void> {
    const pid = worker.child.pid;
    // Only an unreaped child's pid, and so its process group's, cannot have passed to another process. A worker
    // already reaped exited by itself: it keeps that as its reason, and reap() finds what it left.
    if (pid !== undefined && unreaped(worker.child)) {
      worker.killReason ??= reason;
      // In a PID namespace this kills unshare and the agent (its init), and the kernel then kills the rest.
      signalGroup(pid, 'SIGKILL');
    }
    return worker.gone;
  }

  async function finish(worker: Worker, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    const { taskId } = worker.request;
    worker.deadlineTimer?.cancel();
    const exit: WorkerExit = { taskId, reason: worker.killReason ?? 'exited', code, signal };
    try {
      const leftovers = await reap(worker);
      if (leftovers.length > 0) logger.error('worker.leftovers', { taskId, pids: leftovers.join(' ') });
      const fields = { taskId, reason: exit.reason, code, signal };
      if (exit.reason === 'exited' && (code === 0 || worker.stopRequested === true)) logger.info('worker.exited', fields);
      else logger.warn('worker.exited', { ...fields, agentLog: await tail(join(worker.dir, 'agent.log'), 2000) });
      if (options.keepWorkDirs !== true) await emptyDir(worker.dir, logger);
    } catch (error) {
      logger.error('worker.cleanup-failed', { taskId, error: describeError(error) });
    } finally {
      await worker.namespace?.pin.close().catch(() => undefined);
    }
    // Whatever went wrong above, the owner hears of the exit exactly once.
    workers.delete(taskId);
    report(exit);
    startWaiting();
  }

  /**
   * Kills the worker's leftover processes until none is found; returns what would not die. The worker's own process
   * is reaped by now, so its group id may be another's: only processes found by marker or pinned namespace are
   * killed, each by pid.
   */
  async function reap(worker: Worker): Promise<number[]> {
    const deadline = Date.now() + reapTimeoutMs;
    for (;;) {
      const found = await findWorkerProcesses(worker.dir, worker.namespace?.name);
      if (found.length === 0 || Date.now() > deadline) return found.map(({ pid }) => pid);
      for (const leftover of found) killIfStillThere(leftover);
      await sleep(20);
    }
  }

  const sandbox: ProcessSandbox = {
    hostTypes: [hostType],
    isolation,
    missingPrograms: (_hostType, programs) => programsNotOnPath(programs, workerPath),
    start,
    async stop(taskId) {
      endWaiting(taskId, 'exited');
      const worker = workers.get(taskId);
      if (worker === undefined) return;
      worker.stopRequested = true;
      await stopWithGrace(worker.gone, () => kill(worker, 'exited'));
    },
    async list(): Promise<WorkerInfo[]> {
      const launching = [...starting.values()].filter((request) => !workers.has(request.taskId)).map((request) => ({ request }));
      return [...workers.values(), ...waiting.values(), ...launching].map(({ request }) => ({
        taskId: request.taskId,
        deadline: request.deadline,
        labels: { ...request.labels },
      }));
    },
    async close() {
      closed = true;
      for (const taskId of [...waiting.keys()]) endWaiting(taskId, 'exited');
      await Promise.allSettled([...starting.keys()]);
      await Promise.all([...workers.values()].map((worker) => kill(worker, 'exited')));
    },
  };
  return sandbox;
}

async function chooseIsolation(wanted: 'auto' | Isolation): Promise<Isolation> {
  if (wanted === 'process-group') return wanted;
  const works = await probePidNamespace();
  if (works) return 'pid-namespace';
  if (wanted === 'pid-namespace') {
    throw new Error(
      'pid-namespace isolation is not available here: it needs Linux, `setpriv` and `unshare` (util-linux) and the ' +
        'right to create PID namespaces (root, or unprivileged user namespaces)',
    );
  }
  return 'process-group';
}

function probePidNamespace(): Promise<boolean> {
  if (process.platform !== 'linux') return Promise.resolve(false);
  return new Promise((resolve) => {
    const [program = 'setpriv', ...args] = [...pidNamespaceWrapper, 'true'];
    const probe = spawn(program, args, { stdio: 'ignore' });
    const timer = setTimeout(() => probe.kill('SIGKILL'), 10_000);
    probe.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    probe.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code === 0);
    });
  });
}

/** A process as found in /proc: its pid, and its start time, which tells it from a later process given that pid. */
interface FoundProcess {
  pid: number;
  started: string;
}

/**
 * Live (not zombie) processes that belong to a worker: those carrying its HERMETIC_WORKER marker in their
 * environment, which catches processes that left the group with setsid, and those in its PID namespace (which the
 * caller holds open), which also catches any that cleared their environment. Empty where there is no /proc.
 */
async function findWorkerProcesses(dir: string, namespace: string | undefined): Promise<FoundProcess[]> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return [];
  }
  const marker = `HERMETIC_WORKER=${dir}`;
  const found: FoundProcess[] = [];
  await Promise.all(
    entries.map(async (entry) => {
      if (!/^\d+$/.test(entry)) return;
      const pid = Number(entry);
      if (pid === process.pid) return;
      try {
        let belongs = false;
        if (namespace !== undefined) belongs = (await readlink(`/proc/${pid}/ns/pid`)) === namespace;
        if (!belongs) {
          const environ = await readFile(`/proc/${pid}/environ`, 'latin1');
          belongs = environ.split('\0').includes(marker);
        }
        if (!belongs) return;
        const stat = parseStat(await readFile(`/proc/${pid}/stat`, 'latin1'));
        if (stat.state !== 'Z' && stat.state !== 'X') found.push({ pid, started: stat.started });
      } catch {
        // Gone meanwhile, or not ours to read.
      }
    }),
  );
  return found.sort((a, b) => a.pid - b.pid);
}

/** The state and start time (in clock ticks since boot) from a /proc/PID/stat line; the name before them may hold anything. */
function parseStat(stat: string): { state: string; started: string } {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', started: fields[19] ?? '' };
}

/**
 * SIGKILLs a found process unless its pid has since passed to another process. Node has no pidfd, so the check
 * (synchronous, to keep the gap to the kill small) is the start time.
 */
function killIfStillThere({ pid, started }: FoundProcess): void {
  try {
    if (parseStat(readFileSync(`/proc/${pid}/stat`, 'latin1')).started !== started) return;
  } catch {
    return;
  }
  signalPid(pid, 'SIGKILL');
}

/**
 * Empties the task directories a previous run left full because it was killed first; each stays, as the record of
 * its task's start.
 */
async function emptyLeftWorkDirs(workRoot: string, logger: Logger): Promise<void> {
  let emptied = 0;
  for (const entry of await readdir(workRoot, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const dir = join(workRoot, entry.name);
    if ((await readdir(dir)).length === 0) continue;
    await emptyDir(dir, logger);
    emptied++;
  }
  if (emptied > 0) logger.info('sandbox.left-work-emptied', { dirs: emptied });
}

/** Removes everything in `dir` but keeps `dir`; read-only trees (Go's module cache) are made writable first. */
async function emptyDir(dir: string, logger: Logger): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const path = join(dir, entry);
    try {
      await rm(path, { recursive: true, force: true });
    } catch {
      try {
        await makeWritable(path);
        await rm(path, { recursive: true, force: true });
      } catch (error) {
        logger.warn('worker.cleanup-failed', { path, error: describeError(error) });
      }
    }
  }
}

async function makeWritable(path: string): Promise<void> {
  await chmod(path, 0o700).catch(() => undefined);
  const entries = await readdir(path, { withFileTypes: true }).catch(() => undefined);
  if (entries === undefined) return;
  for (const entry of entries) if (entry.isDirectory()) await makeWritable(join(path, entry.name));
}

async function tail(file: string, bytes: number): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    return text.length > bytes ? `...${text.slice(-bytes)}` : text;
  } catch {
    return '';
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: nothing left in the group.
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // ESRCH: it went by itself.
  }
}

function unreaped(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
