import { randomUUID } from 'node:crypto';
import type { InstancesClient, protos, ZoneOperationsClient } from '@google-cloud/compute';
import { PermanentError, RetryableError } from '../../core/errors.ts';
import type { Compute, WorkerInfo, WorkerRequest } from '../../ports/compute.ts';
import { silentLogger, type Logger } from '../../ports/log.ts';
import { instanceBody, instanceName, machineOf, labelKeys, metadataKeys, type GceHostType, type GceNetwork } from './gce-instance.ts';
import { createStartOnce } from '../start-once.ts';

/** Options for the Compute Engine clients: credentials in production, an endpoint and a fixed token in tests. */
export type GceClientOptions = NonNullable<ConstructorParameters<typeof InstancesClient>[0]>;

/** What the Compute Engine compute is built from. */
export interface GceComputeOptions {
  /**
   * The deployment (see deploymentIdPattern): in each VM's name and labels. Only its own VMs are listed, reaped or
   * counted as a duplicate start, so deployments sharing a project never collide.
   */
  deployment: string;
  project: string;
  zone: string;
  /** Host type -> how it runs on Compute Engine. */
  hostTypes: ReadonlyMap<string, GceHostType>;
  network?: GceNetwork;
  /**
   * A service account for the VMs, attached with no scopes; by default they have none at all, which is safer still
   * (no identity token either). It needs no role; the functions need roles/iam.serviceAccountUser on it.
   */
  serviceAccount?: string;
  /** The clock the run-time limit is reckoned from; Date.now unless a test drives time. */
  now?: () => number;
  logger?: Logger;
  clientOptions?: GceClientOptions;
  /**
   * How long `start` waits for Compute Engine to finish creating the VM (default 40 s, inside a 60 s function
   * timeout); past it the VM is left to come up, and the reaper finds it if it never does.
   */
  insertWaitMs?: number;
  /** Loads the client classes on first use (default: `loadComputeClients`). */
  loadClient?: () => Promise<ComputeClientClasses>;
}

type Operation = protos.google.cloud.compute.v1.IOperation;
type Instance = protos.google.cloud.compute.v1.IInstance;

/** The two client classes the adapter uses. */
export interface ComputeClientClasses {
  InstancesClient: typeof InstancesClient;
  ZoneOperationsClient: typeof ZoneOperationsClient;
}

interface Clients {
  instances: InstancesClient;
  operations: ZoneOperationsClient;
}

/** States of an instance whose worker has ended (powered itself off) or is being deleted. */
const endedStates = new Set(['STOPPING', 'STOPPED', 'TERMINATED']);
/** Ended instances that are left to delete. */
const corpseStates = new Set(['STOPPED', 'TERMINATED']);
/** Operation error codes worth another try later: capacity, quota and rate. */
const retryableOperationCodes = new Set([
  'ZONE_RESOURCE_POOL_EXHAUSTED',
  'ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS',
  'QUOTA_EXCEEDED',
  'RESOURCE_OPERATION_RATE_EXCEEDED',
  'RATE_LIMIT_EXCEEDED',
  'INTERNAL_ERROR',
  'UNAVAILABLE',
]);
/** One `zoneOperations.wait` call returns after at most about two minutes; ask for less. */
const maxWaitCallMs = 60_000;

/**
 * Compute on Compute Engine: one VM per task (see instanceName), whose boot script runs the task once and powers
 * the VM off. `start` inserts the VM and waits for Compute Engine to create it, so a failed creation (no capacity,
 * quota, a bad image) rejects it, RetryableError or PermanentError, and the task stays pending; an existing VM of
 * the task is success. `stop` asks for the VM's deletion and does not wait for it. `list` shows the VMs still
 * running, and deletes the ones that powered off. There is no exit callback: the result landing wakes collect, and
 * the reaper finds VMs that are gone. `close` deletes nothing: VMs outlive the process that started them.
 * The client library is imported on first use.
 */
export function createGceCompute(options: GceComputeOptions): Compute {
  const { deployment, project, zone, hostTypes } = options;
  const now = options.now ?? Date.now;
  const logger = options.logger ?? silentLogger;
  const insertWaitMs = options.insertWaitMs ?? 40_000;
  const loadClient = options.loadClient ?? loadComputeClients;

  let clientsPromise: Promise<Clients> | undefined;
  /** Tasks that had a VM from this adapter: the idempotency record once the VM is deleted. */
  const once = createStartOnce(logger);
  let closed = false;

  function clients(): Promise<Clients> {
    clientsPromise ??= loadClient().then(
      (compute) => {
        const clientOptions = { ...options.clientOptions };
        return {
          instances: new compute.InstancesClient({ ...clientOptions }),
          operations: new compute.ZoneOperationsClient({ ...clientOptions }),
        };
      },
      (error: unknown) => {
        clientsPromise = undefined;
        throw new RetryableError(`cannot load the Compute Engine client: ${messageOf(error)}`, { cause: error });
      },
    );
    return clientsPromise;
  }

  async function start(request: WorkerRequest): Promise<void> {
    if (closed) throw new Error('the Compute Engine compute is closed');
    const hostType = hostTypes.get(request.hostType);
    if (hostType === undefined) {
      throw new Error(`the Compute Engine compute cannot run host type "${request.hostType}"; it runs: ${[...hostTypes.keys()].join(', ')}`);
    }
    const { taskId } = request;
    // No VM is made when the body or the insert fails, so the task never had a worker: a retry may start one.
    return once.start(taskId, () => {
      let body: Instance;
      try {
        body = instanceBody(request, {
          deployment,
          zone,
          hostType,
          now: now(),
          ...(options.network === undefined ? {} : { network: options.network }),
          ...(options.serviceAccount === undefined ? {} : { serviceAccount: options.serviceAccount }),
        });
      } catch (error) {
        throw new PermanentError(`cannot make the VM of task ${taskId}: ${messageOf(error)}`, { cause: error });
      }
      return insert(request, body);
    });
  }

  async function insert(request: WorkerRequest, body: Instance): Promise<void> {
    const { taskId } = request;
    const { instances, operations } = await clients();
    const name = instanceName(deployment, taskId);
    let operation: Operation;
    try {
      // One request ID per start: a transport retry of this insert is the same request to Compute Engine. Not one per
      // task, which would answer a retry after a failed creation with that failure; the name guards the task.
      const [pending] = await instances.insert({ project, zone, instanceResource: body, requestId: randomUUID() });
      // The client's "operation" wraps Compute Engine's own, whose status and name are what wait takes.
      operation = (pending as unknown as { latestResponse: Operation }).latestResponse;
    } catch (error) {
      if (httpStatusOf(error) === 409) {
        // The name is the record that survives any restart: the task already had a worker.
        logger.info('worker.duplicate-start', { taskId, instance: name });
        return;
      }
      throw classify(error, `cannot create VM ${name} for task ${taskId}`);
    }
    const until = Date.now() + insertWaitMs;
    while (operation.status !== 'DONE') {
      const left = until - Date.now();
      if (left <= 0) {
        // The VM exists and is coming up; if it never does, the reaper finds it gone.
        logger.warn('worker.insert-pending', { taskId, instance: name, operation: operation.name ?? '' });
        return;
      }
      try {
        [operation] = await operations.wait({ project, zone, operation: operation.name ?? '' }, { timeout: Math.min(left, maxWaitCallMs) });
      } catch (error) {
        throw classify(error, `cannot learn whether VM ${name} of task ${taskId} was created`);
      }
    }
    const codes = (operation.error?.errors ?? []).map((entry) => entry.code ?? '');
    if (codes.includes('RESOURCE_ALREADY_EXISTS')) {
      logger.info('worker.duplicate-start', { taskId, instance: name });
      return;
    }
    if (codes.length > 0) {
      const why = (operation.error?.errors ?? []).map((entry) => `${entry.code ?? ''}: ${entry.message ?? ''}`).join('; ');
      const message = `Compute Engine did not create VM ${name} for task ${taskId}: ${why}`;
      const status = operation.httpErrorStatusCode ?? 0;
      const retryable = codes.some((code) => retryableOperationCodes.has(code)) || status === 429 || status >= 500;
      throw retryable ? new RetryableError(message, { cause: operation.error }) : new PermanentError(message, { cause: operation.error });
    }
    logger.info('worker.started', { taskId, instance: name, hostType: request.hostType });
  }

  async function stop(taskId: string): Promise<void> {
    // A creation in flight lands first, so the deletion finds it.
    await once.pending(taskId)?.catch(() => undefined);
    let name: string;
    try {
      name = instanceName(deployment, taskId);
    } catch {
      return; // no VM can have that name
    }
    const { instances } = await clients();
    try {
      await instances.delete({ project, zone, instance: name });
      logger.info('worker.stopped', { taskId, instance: name });
    } catch (error) {
      if (httpStatusOf(error) === 404) return;
      throw classify(error, `cannot delete VM ${name} of task ${taskId}`);
    }
  }

  async function list(): Promise<WorkerInfo[]> {
    const { instances } = await clients();
    let found: Instance[];
    try {
      [found] = await instances.list({ project, zone, filter: `labels.${labelKeys.task}:* AND labels.${labelKeys.deployment}=${deployment}` });
    } catch (error) {
      throw classify(error, `cannot list the VMs in ${project}/${zone}`);
    }
    const alive: WorkerInfo[] = [];
    const corpses: Instance[] = [];
    for (const instance of found) {
      if (corpseStates.has(instance.status ?? '')) corpses.push(instance);
      if (endedStates.has(instance.status ?? '')) continue;
      alive.push({ taskId: instance.labels?.[labelKeys.task] ?? '', deadline: deadlineOf(instance), labels: requestLabelsOf(instance) });
    }
    // Powered off by its boot script (its task is done, with a result or without) or stopped by hand: nothing runs on
    // it again, and its disk costs until it is deleted. Awaited: a function's work after it returns may never run.
    await Promise.allSettled(
      corpses.map(async (instance) => {
        const fields = { taskId: instance.labels?.[labelKeys.task] ?? '', instance: instance.name ?? '', status: instance.status ?? '' };
        try {
          await instances.delete({ project, zone, instance: instance.name ?? '' });
          logger.info('worker.removed', fields);
        } catch (error) {
          if (httpStatusOf(error) !== 404) logger.warn('worker.remove-failed', { ...fields, error: messageOf(error) });
        }
      }),
    );
    return alive;
  }

  return {
    hostTypes: [...hostTypes.keys()],
    start,
    stop,
    list,
    machineOf(name, spotAllowed) {
      const hostType = hostTypes.get(name);
      return hostType === undefined ? undefined : machineOf(hostType, spotAllowed);
    },
    async close() {
      // VMs are not this process's children: collect and the reaper delete them, whichever process runs those.
      closed = true;
      await Promise.allSettled(once.inFlight());
    },
  };
}

/**
 * Imports the instances and zone operations clients. The package's index loads all of its several hundred clients
 * (v1, beta and small), 1.3 to 2 s on a cold start; these two modules alone take about 0.3 s. Falls back to the index
 * if a release moves them.
 */
export async function loadComputeClients(): Promise<ComputeClientClasses> {
  try {
    const [instances, operations] = await Promise.all([
      import('@google-cloud/compute/build/src/v1/instances_client.js'),
      import('@google-cloud/compute/build/src/v1/zone_operations_client.js'),
    ]);
    return { InstancesClient: instances.InstancesClient, ZoneOperationsClient: operations.ZoneOperationsClient };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw error;
    return import('@google-cloud/compute');
  }
}

function metadataValue(instance: Instance, key: string): string | undefined {
  return instance.metadata?.items?.find((item) => item.key === key)?.value ?? undefined;
}

/** The VM's deadline; an unreadable one is taken as passed, so the reaper deletes the VM. */
function deadlineOf(instance: Instance): number {
  const deadline = Number(metadataValue(instance, metadataKeys.deadline) ?? instance.labels?.[labelKeys.deadline]);
  return Number.isFinite(deadline) ? deadline : 0;
}

/** The labels the request had: exactly, from metadata, or else the instance's own, less the adapter's. */
function requestLabelsOf(instance: Instance): Record<string, string> {
  try {
    const parsed: unknown = JSON.parse(metadataValue(instance, metadataKeys.labels) ?? '');
    if (typeof parsed === 'object' && parsed !== null && Object.values(parsed).every((value) => typeof value === 'string')) {
      return parsed as Record<string, string>;
    }
  } catch {
    // Not ours to read: fall back to the instance labels.
  }
  const owned = new Set<string>(Object.values(labelKeys));
  return Object.fromEntries(Object.entries(instance.labels ?? {}).filter(([key]) => !owned.has(key)));
}

/**
 * A client error as one of ours: RetryableError for what may pass (no answer, 429, 5xx, quota and rate limits),
 * PermanentError for what will not (a bad request, a missing image, no permission).
 */
export function classify(error: unknown, what: string): Error {
  const status = httpStatusOf(error);
  const message = `${what}: ${messageOf(error)}`;
  const quota = status === 403 && /quota|rate ?limit/i.test(messageOf(error));
  if (status === undefined || status === 429 || status >= 500 || quota) return new RetryableError(message, { cause: error });
  return new PermanentError(message, { cause: error });
}

/** The HTTP status of a client error (google-gax's REST transport keeps it), if it had one. */
function httpStatusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const status = (error as { httpStatusCode?: unknown }).httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
