import type Docker from 'dockerode';
import { Header } from 'tar';
import { z } from 'zod';
import { deploymentIdPattern } from '../../core/model/ids.ts';
import type { TaskSpec } from '../../core/model/wire.ts';
import type { Compute, OnWorkerExit, WorkerExit, WorkerInfo, WorkerRequest } from '../../ports/compute.ts';
import { silentLogger, type Logger } from '../../ports/log.ts';
import { atDeadline, type DeadlineTimer } from '../deadline-timer.ts';
import { stopWithGrace } from '../stop-with-grace.ts';
import { createStartOnce } from '../start-once.ts';

/** Resources one worker container may use. */
export interface DockerLimits {
  /** CPUs (fractions allowed); capped at what the engine has. Default 2. */
  cpus?: number;
  /** Memory, swap included. Default 4 GiB. */
  memoryBytes?: number;
  /** Processes and threads. Default 4096. */
  pids?: number;
}

/** What the Docker compute is built from. */
export interface DockerComputeOptions {
  docker: Docker;
  /** Host type -> image tag. The images run the agent as their entrypoint (see infra/env/). */
  images: ReadonlyMap<string, string>;
  /** Host type -> Docker platform ("linux/arm64"), for images of another architecture than the engine's. */
  platforms?: ReadonlyMap<string, string>;
  /**
   * The deployment this compute serves (see deploymentIdPattern): in each container's name and label. Only its own
   * containers are adopted, listed or counted as a duplicate start, so deployments on one engine never collide.
   */
  deployment: string;
  /** An internal (no route out) bridge network for the workers, made if missing. Its gateway is the one host address workers reach. */
  network: string;
  onExit: OnWorkerExit;
  logger?: Logger;
  limits?: DockerLimits;
  /**
   * Says which tasks' builders asked for the network (default: the request's `network`): their workers get the
   * default bridge, and their steps keep it.
   */
  networkAccess?: (request: WorkerRequest) => boolean;
}

/** A Compute on a Docker engine that also names the address workers reach the host at. */
export type DockerCompute = Compute & {
  /** The internal network's gateway: bind the blob endpoint here and sign URLs with it. */
  readonly gatewayIp: string;
};

const labelOf = {
  task: 'hermetic.task',
  deadline: 'hermetic.deadline',
  deployment: 'hermetic.deployment',
  labels: 'hermetic.labels',
} as const;
/** Request label keys that would collide with the adapter's own labels (`task` may only repeat the task ID). */
const reservedLabelKeys = new Set(['deadline', 'deployment', 'labels']);
const labelKeyPattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Docker's container name rule, which task IDs must pass as part of a container's name. */
const taskIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const aliveStates = new Set(['created', 'running', 'paused', 'restarting']);
const specPath = 'etc/hermetic/task.json';

/**
 * What the agent needs, and why; everything else is dropped:
 * SYS_ADMIN makes each step's network and PID namespaces (unshare); NET_ADMIN brings up the loopback interface of a
 * step's fresh network namespace (it starts down); SETUID and SETGID switch a step to the builder
 * user (setpriv); SETPCAP empties a step's bounding set (setpriv skips that silently without it); CHOWN gives the
 * unpacked source and HOME to the builder user; KILL signals steps, which run as another user; DAC_OVERRIDE lets the
 * root agent create its directories in the builder-owned /work and unpack archives holding read-only directories.
 * Steps get none of them: setpriv clears every set.
 */
const agentCapabilities = ['SYS_ADMIN', 'NET_ADMIN', 'SETUID', 'SETGID', 'SETPCAP', 'CHOWN', 'KILL', 'DAC_OVERRIDE'];

const defaultLimits = { cpus: 2, memoryBytes: 4 * 1024 ** 3, pids: 4096 };
/** How much of a failed worker's output goes to the log. */
const tailBytes = 2_000;
/** Pause before looking at a container again when waiting on it failed (the engine restarting, a broken socket). */
const waitRetryMs = 1_000;
/**
 * How long one wait on a container may go unanswered before the container is looked at afresh. A wait whose
 * connection the engine dropped (dockerd restarting) never settles: docker-modem ignores a response cut short.
 */
const waitRecheckMs = 30_000;

interface Worker {
  taskId: string;
  container: Docker.Container;
  killReason?: WorkerExit['reason'];
  /** The kill request in flight or done; resolves true when a signal reached a running container. */
  killing?: Promise<boolean>;
  /** Stopped by its owner (its result is in): an exit then is expected, not a warning. */
  stopRequested?: boolean;
  deadlineTimer?: DeadlineTimer;
  /** Settles after onExit was called. */
  gone: Promise<void>;
}

/** A task's container: `hermetic-<deployment>-<taskId>`. */
export function containerName(deployment: string, taskId: string): string {
  return `hermetic-${deployment}-${taskId}`;
}

/**
 * Compute on a Docker engine: one container per task (see containerName), from the host type's image, with every
 * capability dropped but the few the agent needs, resource limits, no mounts but the read-only directories a request
 * names, and only an internal network. The
 * task's spec is copied in as a root-only file before start. Killed at its deadline; removed when it exits. On
 * creation it adopts the containers an earlier runtime of the same deployment left: running ones are watched, exited
 * ones reported and removed. Rejects when the engine does not answer or the network exists but is not internal.
 */
export async function createDockerCompute(options: DockerComputeOptions): Promise<DockerCompute> {
  const { docker, images, network, deployment, onExit } = options;
  if (!deploymentIdPattern.test(deployment)) throw new Error(`deployment ID ${JSON.stringify(deployment)} is not ${deploymentIdPattern}`);
  const logger = options.logger ?? silentLogger;
  const gatewayIp = await ensureNetwork(docker, network, deployment);
  const engine = await docker.info();
  const cpus = Math.min(options.limits?.cpus ?? defaultLimits.cpus, Number(engine.NCPU) || Number.POSITIVE_INFINITY);
  const memoryBytes = options.limits?.memoryBytes ?? defaultLimits.memoryBytes;
  const pids = options.limits?.pids ?? defaultLimits.pids;
  const ownerFilter = [labelOf.task, `${labelOf.deployment}=${deployment}`];

  const workers = new Map<string, Worker>();
  /** Tasks that had a worker while this adapter ran: the idempotency record once their container is removed. */
  const once = createStartOnce(logger);
  let closed = false;

  async function start(request: WorkerRequest): Promise<void> {
    if (closed) throw new Error('the Docker compute is closed');
    const image = images.get(request.hostType);
    if (image === undefined) {
      throw new Error(
        `the Docker compute cannot run host type "${request.hostType}"; it runs: ${[...images.keys()].join(', ')}`,
      );
    }
    const { taskId } = request;
    if (!taskIdPattern.test(taskId)) throw new Error(`unsafe task ID ${JSON.stringify(taskId)}`);
    // Nothing runs when launching fails, so the task never had a worker: a retry may start one.
    return once.start(taskId, () => launch(request, image, containerLabels(request, deployment)));
  }

  async function launch(request: WorkerRequest, image: string, labels: Record<string, string>): Promise<void> {
    const { taskId } = request;
    const name = containerName(deployment, taskId);
    const networkAccess = (options.networkAccess ?? ((asked) => asked.network === true))(request);
    let container: Docker.Container;
    try {
      const platform = options.platforms?.get(request.hostType);
      container = await docker.createContainer({
        name,
        ...(platform === undefined ? {} : { platform }),
        Image: image,
        Labels: labels,
        // Appended to the image's entrypoint (the agent with --isolate-steps).
        ...(networkAccess ? { Cmd: ['--step-network'] } : {}),
        HostConfig: {
          CapDrop: ['ALL'],
          CapAdd: agentCapabilities,
          SecurityOpt: ['no-new-privileges'],
          NanoCpus: Math.round(cpus * 1e9),
          Memory: memoryBytes,
          MemorySwap: memoryBytes,
          PidsLimit: pids,
          NetworkMode: networkAccess ? 'bridge' : network,
          // A file:// module proxy on this machine, read-only at the same path, for the task that fetches modules.
          ...(request.readOnlyPaths === undefined ? {} : { Binds: request.readOnlyPaths.map((path) => `${path}:${path}:ro`) }),
          // The agent is PID 1: when it exits, the kernel kills everything else in the container.
          Init: false,
          AutoRemove: false,
          RestartPolicy: { Name: 'no' },
          // Steps log through signed URLs; this is only the agent's own few lines, read back on failure.
          LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '1' } },
        },
      });
    } catch (error) {
      if (statusOf(error) === 409) {
        // The name, this deployment's own, is the record that survives a restart: the task already had a worker.
        logger.info('worker.duplicate-start', { taskId, container: name });
        return;
      }
      const hint = statusOf(error) === 404 ? ` (is image ${image} of host type ${request.hostType} built?)` : '';
      throw new Error(`cannot create a container for task ${taskId}${hint}: ${messageOf(error)}`, { cause: error });
    }
    try {
      await container.putArchive(specArchive(request.spec), { path: '/' });
      await container.start();
    } catch (error) {
      await container.remove({ force: true }).catch(() => undefined);
      throw new Error(`cannot start the container of task ${taskId}: ${messageOf(error)}`, { cause: error });
    }
    const worker = watch(taskId, container, request.deadline);
    logger.info('worker.started', { taskId, container: name, image, network: networkAccess ? 'bridge' : network });
    if (closed) void kill(worker, 'exited');
  }

  function watch(taskId: string, container: Docker.Container, deadline: number): Worker {
    const worker: Worker = { taskId, container, gone: Promise.resolve() };
    workers.set(taskId, worker);
    worker.gone = waitForExit(worker).then((outcome) => finish(worker, outcome));
    worker.deadlineTimer = atDeadline(deadline, () => void kill(worker, 'deadline'));
    return worker;
  }

  /** Resolves when the container has stopped (with its exit code) or is gone without one (vanished). */
  async function waitForExit(worker: Worker): Promise<{ code: number | null; vanished: boolean }> {
    for (;;) {
      try {
        const result = await waitAWhile(worker.container);
        if (result !== recheck) {
          const code = z.object({ StatusCode: z.number() }).safeParse(result);
          return { code: code.success ? code.data.StatusCode : null, vanished: false };
        }
      } catch (error) {
        if (statusOf(error) === 404) return { code: null, vanished: true };
        logger.warn('worker.wait-failed', { taskId: worker.taskId, error: messageOf(error) });
        await sleep(waitRetryMs);
      }
      try {
        const { State } = await worker.container.inspect();
        if (!aliveStates.has(State.Status)) return { code: State.ExitCode, vanished: false };
      } catch (error) {
        if (statusOf(error) === 404 || closed) return { code: null, vanished: true };
      }
    }
  }

  function kill(worker: Worker, reason: WorkerExit['reason']): Promise<void> {
    if (worker.killing === undefined) {
      const killing = worker.container.kill().then(
        () => true,
        (error: unknown) => {
          const status = statusOf(error);
          // 409: not running, 404: gone; either way it ended by itself, and that stays its reason.
          if (status !== 404 && status !== 409) {
            logger.warn('worker.kill-failed', { taskId: worker.taskId, error: messageOf(error) });
            delete worker.killing;
          }
          return false;
        },
      );
      worker.killing = killing.then((sent) => {
        if (sent) worker.killReason ??= reason;
        return sent;
      });
    }
    return worker.gone;
  }

  async function finish(worker: Worker, outcome: { code: number | null; vanished: boolean }): Promise<void> {
    const { taskId, container } = worker;
    worker.deadlineTimer?.cancel();
    // A kill in flight decides whether this exit was ours.
    const killed = (await worker.killing) === true;
    const exit: WorkerExit = outcome.vanished
      ? { taskId, reason: 'vanished', code: null, signal: null }
      : killed
        ? { taskId, reason: worker.killReason ?? 'exited', code: null, signal: 'SIGKILL' }
        : { taskId, reason: 'exited', code: outcome.code, signal: null };
    try {
      const fields = { taskId, reason: exit.reason, code: exit.code, signal: exit.signal };
      if (exit.reason === 'exited' && (exit.code === 0 || worker.stopRequested === true)) {
        logger.info('worker.exited', fields);
      } else if (!outcome.vanished) {
        logger.warn('worker.exited', { ...fields, ...(await diagnostics(container)) });
      } else {
        logger.warn('worker.vanished', fields);
      }
      await container.remove({ force: true }).catch((error: unknown) => {
        // 404: already gone; 409: a removal is already under way.
        if (statusOf(error) !== 404 && statusOf(error) !== 409) throw error;
      });
    } catch (error) {
      logger.error('worker.cleanup-failed', { taskId, error: messageOf(error) });
    }
    // Whatever went wrong above, the owner hears of the exit exactly once.
    workers.delete(taskId);
    try {
      onExit(exit);
    } catch (error) {
      logger.error('worker.on-exit-failed', { taskId, error: messageOf(error) });
    }
  }

  async function adopt(): Promise<void> {
    const found = await docker.listContainers({ all: true, filters: { label: ownerFilter } });
    for (const info of found) {
      const taskId = info.Labels[labelOf.task] ?? '';
      if (!taskIdPattern.test(taskId) || workers.has(taskId)) continue;
      const container = docker.getContainer(info.Id);
      if (info.State === 'created') {
        // Its runtime died between create and start: it never ran, and a redelivered launch will start it afresh.
        await container.remove({ force: true }).catch(() => undefined);
        logger.info('worker.discarded', { taskId, state: info.State });
        continue;
      }
      once.adopt(taskId);
      // A running one is watched like our own; an exited one reports at once through the same path.
      watch(taskId, container, deadlineOf(info.Labels));
      logger.info('worker.adopted', { taskId, state: info.State });
    }
  }

  await adopt();

  return {
    hostTypes: [...images.keys()],
    gatewayIp,
    start,
    async stop(taskId) {
      const worker = workers.get(taskId);
      if (worker === undefined) return;
      worker.stopRequested = true;
      await stopWithGrace(worker.gone, () => kill(worker, 'exited'));
    },
    async list(): Promise<WorkerInfo[]> {
      const found = await docker.listContainers({ all: true, filters: { label: ownerFilter } });
      return found
        .filter((info) => aliveStates.has(info.State))
        .map((info) => ({
          taskId: info.Labels[labelOf.task] ?? '',
          deadline: deadlineOf(info.Labels),
          labels: requestLabelsOf(info.Labels),
        }));
    },
    async close() {
      closed = true;
      await Promise.allSettled(once.inFlight());
      await Promise.all([...workers.values()].map((worker) => kill(worker, 'exited')));
    },
  };
}

const recheck = Symbol('recheck');

/** The engine's answer to a wait on the container, or `recheck` when none came within waitRecheckMs. */
async function waitAWhile(container: Docker.Container): Promise<unknown> {
  const abort = new AbortController();
  const waiting: Promise<unknown> = container.wait({ abortSignal: abort.signal });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof recheck>((resolve) => {
    timer = setTimeout(() => resolve(recheck), waitRecheckMs);
  });
  try {
    return await Promise.race([waiting, late]);
  } finally {
    clearTimeout(timer);
    abort.abort();
    // Given up on: its abort (or nothing, if its connection is gone) is no failure.
    waiting.catch(() => undefined);
  }
}

/** The internal network's gateway IP; creates the network when it is missing. */
async function ensureNetwork(docker: Docker, name: string, deployment: string): Promise<string> {
  const inspect = () =>
    docker
      .getNetwork(name)
      .inspect()
      .catch((error: unknown) => {
        if (statusOf(error) === 404) return undefined;
        throw error;
      });
  let info = (await inspect()) as Docker.NetworkInspectInfo | undefined;
  if (info === undefined) {
    try {
      await docker.createNetwork({
        Name: name,
        Driver: 'bridge',
        Internal: true,
        CheckDuplicate: true,
        // Workers have no business with each other.
        Options: { 'com.docker.network.bridge.enable_icc': 'false' },
        Labels: { [labelOf.deployment]: deployment },
      });
    } catch (error) {
      // 409: another runtime made it meanwhile.
      if (statusOf(error) !== 409) throw new Error(`cannot create network ${name}: ${messageOf(error)}`, { cause: error });
    }
    info = (await inspect()) as Docker.NetworkInspectInfo | undefined;
  }
  if (info === undefined) throw new Error(`network ${name} vanished while it was being made`);
  if (!info.Internal) {
    throw new Error(`network ${name} exists but is not internal: workers on it could reach anywhere; remove it or pick another name`);
  }
  const gateway = (info.IPAM?.Config ?? []).map((config) => config.Gateway).find((ip) => ip !== undefined && ip.includes('.'));
  if (gateway === undefined) throw new Error(`network ${name} has no IPv4 gateway`);
  return gateway;
}

function containerLabels(request: WorkerRequest, deployment: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(request.labels)) {
    if (!labelKeyPattern.test(key) || reservedLabelKeys.has(key) || (key === 'task' && value !== request.taskId)) {
      throw new Error(`label ${JSON.stringify(key)} of task ${request.taskId} is not allowed on a container`);
    }
    labels[`hermetic.${key}`] = value;
  }
  return {
    ...labels,
    [labelOf.task]: request.taskId,
    [labelOf.deadline]: String(request.deadline),
    [labelOf.deployment]: deployment,
    // The request's own labels, exactly, so list() gives back what start() was given.
    [labelOf.labels]: JSON.stringify(request.labels),
  };
}

const requestLabels = z.record(z.string(), z.string());

function requestLabelsOf(labels: Record<string, string>): Record<string, string> {
  try {
    const parsed = requestLabels.safeParse(JSON.parse(labels[labelOf.labels] ?? ''));
    if (parsed.success) return parsed.data;
  } catch {
    // Not ours to read: fall back to the individual labels.
  }
  const own = new Set<string>(Object.values(labelOf));
  return Object.fromEntries(
    Object.entries(labels)
      .filter(([key]) => key.startsWith('hermetic.') && !own.has(key))
      .map(([key, value]) => [key.slice('hermetic.'.length), value]),
  );
}

/** A container's deadline; an unreadable one is taken as passed, so the container does not outlive its owner. */
function deadlineOf(labels: Record<string, string>): number {
  const deadline = Number(labels[labelOf.deadline]);
  return Number.isFinite(deadline) ? deadline : 0;
}

/** A tar holding the spec as a root-only file, for putArchive. */
function specArchive(spec: TaskSpec): Buffer {
  const body = Buffer.from(JSON.stringify(spec));
  const header = Buffer.alloc(512);
  // No directory entry: an image's own /etc/hermetic keeps its mode; a missing one is made 0755 by the engine.
  new Header({ path: specPath, type: 'File', mode: 0o400, size: body.length, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: new Date() }).encode(header, 0);
  return Buffer.concat([header, body, Buffer.alloc((512 - (body.length % 512)) % 512), Buffer.alloc(1024)]);
}

/** The container's last output and whether the kernel killed it for memory, for a failed worker's log line. */
async function diagnostics(container: Docker.Container): Promise<{ agentLog: string; oomKilled?: boolean }> {
  let agentLog = '';
  try {
    const raw = await container.logs({ stdout: true, stderr: true, follow: false, tail: 200 });
    const text = demux(raw).toString('utf8');
    agentLog = text.length > tailBytes ? `...${text.slice(-tailBytes)}` : text;
  } catch {
    // Gone already: there is nothing to show.
  }
  try {
    const { State } = await container.inspect();
    return State.OOMKilled ? { agentLog, oomKilled: true } : { agentLog };
  } catch {
    return { agentLog };
  }
}

/** The payloads of Docker's multiplexed log stream (8-byte frame headers), in order. */
function demux(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= raw.length) {
    const size = raw.readUInt32BE(offset + 4);
    parts.push(raw.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return Buffer.concat(parts);
}

function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null || !('statusCode' in error)) return undefined;
  return typeof error.statusCode === 'number' ? error.statusCode : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
