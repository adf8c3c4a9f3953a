import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { closeSync, existsSync, openSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GceClientOptions } from '../../shared/adapters/gcp/gce-compute.ts';
import type { GceInstance } from '../../shared/adapters/gcp/gce-instance.ts';
import { scanProcesses } from '../helpers/proc-scan.ts';
import { FakeApiError, googleErrorBody } from './api-error.ts';
import { listenForTests, readBody, sendJson } from './http.ts';

/**
 * A fake Compute Engine REST API on node:http, for what the real `@google-cloud/compute` client sends: instances
 * insert, get, delete and list (with label filters), and zone operations get and wait. Insert bodies are checked as
 * Compute Engine checks them (name, labels, metadata, disks, scheduling), and answered with its error shapes. A VM
 * comes up after a moment, is deleted at its run-time limit, and its guest is whatever `guest` makes of it.
 */

/** A VM as the fake keeps it. */
export interface FakeVm {
  project: string;
  zone: string;
  name: string;
  /** The insert body, as received. */
  body: GceInstance;
  status: 'PROVISIONING' | 'STAGING' | 'RUNNING' | 'STOPPING' | 'TERMINATED';
  /** How it ended, once it did: its guest powered it off, it was deleted, or its run-time limit deleted it. */
  ended?: 'powered-off' | 'deleted' | 'run-duration';
}

/** What a guest gets when its VM boots. */
export interface BootedVm {
  vm: FakeVm;
  /** The guest powered the VM off: it goes TERMINATED. */
  powerOff(): void;
  /** Called when the VM is deleted under the guest (or the fake closes): the guest must stop at once. */
  onDestroy(listener: () => void): void;
}

/** Runs in a VM when it boots. */
export type FakeGuest = (booted: BootedVm) => void;

/** How the fake behaves. */
export interface FakeGceOptions {
  /** What runs in each VM; by default nothing, and the VM runs until deleted or its run-time limit. */
  guest?: FakeGuest;
  /** Answer a repeated insert request ID with its first operation, as Compute Engine does (default true). */
  honourRequestIds?: boolean;
}

/** The running fake, and what it saw. */
export interface FakeGce {
  /** Client options that point the real client at this fake, with a fixed token. */
  readonly clientOptions: GceClientOptions;
  /** Every VM the fake has, ended ones too, until deleted. */
  vms(): FakeVm[];
  vm(name: string): FakeVm | undefined;
  /** The insert bodies received, valid or not, in order. */
  readonly inserts: unknown[];
  /** Makes the next insert's operation fail with this Compute Engine error code and HTTP status. */
  failNextInsert(code: string, httpStatus: number): void;
  /** Powers a VM off as its guest would. */
  powerOff(name: string): void;
  close(): Promise<void>;
}

const token = `fake-token-${randomBytes(4).toString('hex')}`;
const namePattern = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const labelKeyPattern = /^[a-z][a-z0-9_-]{0,62}$/;
const labelValuePattern = /^[a-z0-9_-]{0,63}$/;
const metadataKeyPattern = /^[a-zA-Z0-9_-]{1,128}$/;
/** From insert to RUNNING, and from delete to gone. */
const provisionMs = 20;
const deleteMs = 20;


/** Starts the fake on a free port of 127.0.0.1. */
export async function startFakeGce(options: FakeGceOptions = {}): Promise<FakeGce> {
  const vms = new Map<string, FakeVm>();
  const destroyers = new Map<FakeVm, (() => void)[]>();
  const runTimers = new Map<FakeVm, NodeJS.Timeout>();
  const timers = new Set<NodeJS.Timeout>();
  const operations = new Map<string, Record<string, unknown>>();
  const byRequestId = new Map<string, string>();
  const inserts: unknown[] = [];
  let failNext: { code: string; httpStatus: number } | undefined;
  let serial = 0;
  let closed = false;

  const later = (ms: number, run: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      run();
    }, ms);
    timers.add(timer);
    return timer;
  };
  const keyOf = (project: string, zone: string, name: string) => `${project}/${zone}/${name}`;

  function newOperation(vm: { project: string; zone: string; name: string }, type: string): Record<string, unknown> {
    const name = `operation-${Date.now()}-${++serial}`;
    const zoneUrl = `https://www.googleapis.com/compute/v1/projects/${vm.project}/zones/${vm.zone}`;
    const operation: Record<string, unknown> = {
      kind: 'compute#operation',
      id: String(1000 + serial),
      name,
      zone: zoneUrl,
      operationType: type,
      targetLink: `${zoneUrl}/instances/${vm.name}`,
      status: 'RUNNING',
      progress: 0,
      insertTime: new Date().toISOString(),
      selfLink: `${zoneUrl}/operations/${name}`,
    };
    operations.set(`${vm.project}/${vm.zone}/${name}`, operation);
    return operation;
  }

  function finishOperation(operation: Record<string, unknown>, error?: { code: string; httpStatus: number }) {
    operation.status = 'DONE';
    operation.progress = 100;
    operation.endTime = new Date().toISOString();
    if (error !== undefined) {
      operation.error = { errors: [{ code: error.code, message: `injected: ${error.code}` }] };
      operation.httpErrorStatusCode = error.httpStatus;
      operation.httpErrorMessage = error.code;
    }
  }

  function destroyGuest(vm: FakeVm) {
    const listeners = destroyers.get(vm) ?? [];
    destroyers.delete(vm);
    for (const listener of listeners) listener();
  }

  const deleting = new Set<FakeVm>();

  /** The guest powered off: RUNNING, STOPPING, then TERMINATED, which stays until deleted. */
  function powerOff(vm: FakeVm) {
    if (vm.status !== 'RUNNING' || deleting.has(vm)) return;
    clearTimeout(runTimers.get(vm));
    runTimers.delete(vm);
    vm.ended ??= 'powered-off';
    vm.status = 'STOPPING';
    destroyGuest(vm);
    later(deleteMs, () => {
      if (!deleting.has(vm)) vm.status = 'TERMINATED';
    });
  }

  /** Deleted by request or by its run-time limit: STOPPING, then gone. */
  function destroy(vm: FakeVm, how: 'deleted' | 'run-duration', operation?: Record<string, unknown>) {
    if (deleting.has(vm)) {
      if (operation !== undefined) later(deleteMs, () => finishOperation(operation));
      return;
    }
    deleting.add(vm);
    clearTimeout(runTimers.get(vm));
    runTimers.delete(vm);
    vm.ended ??= how;
    vm.status = 'STOPPING';
    destroyGuest(vm);
    later(deleteMs, () => {
      vms.delete(keyOf(vm.project, vm.zone, vm.name));
      deleting.delete(vm);
      if (operation !== undefined) finishOperation(operation);
    });
  }

  function insert(project: string, zone: string, body: unknown, requestId: string | null): Record<string, unknown> {
    inserts.push(body);
    if (requestId !== null && options.honourRequestIds !== false) {
      const previous = byRequestId.get(`${project}/${zone}/${requestId}`);
      const operation = previous === undefined ? undefined : operations.get(previous);
      if (operation !== undefined) return operation;
    }
    const instance = validateInstance(body, zone);
    const name = instance.name ?? '';
    if (vms.has(keyOf(project, zone, name))) {
      throw new FakeApiError(409, 'alreadyExists', `The resource 'projects/${project}/zones/${zone}/instances/${name}' already exists`);
    }
    const vm: FakeVm = { project, zone, name, body: instance, status: 'PROVISIONING' };
    vms.set(keyOf(project, zone, name), vm);
    const operation = newOperation(vm, 'insert');
    if (requestId !== null) byRequestId.set(`${project}/${zone}/${requestId}`, `${project}/${zone}/${String(operation.name)}`);
    const failure = failNext;
    failNext = undefined;
    later(provisionMs, () => {
      if (failure !== undefined) {
        vms.delete(keyOf(project, zone, name));
        finishOperation(operation, failure);
        return;
      }
      if (vm.status !== 'PROVISIONING') {
        finishOperation(operation);
        return;
      }
      vm.status = 'RUNNING';
      finishOperation(operation);
      const seconds = Number(instance.scheduling?.maxRunDuration?.seconds ?? 0);
      if (seconds > 0) runTimers.set(vm, later(seconds * 1000, () => destroy(vm, 'run-duration')));
      if (options.guest !== undefined) {
        options.guest({
          vm,
          powerOff: () => powerOff(vm),
          onDestroy(listener) {
            if (vm.status === 'RUNNING') destroyers.set(vm, [...(destroyers.get(vm) ?? []), listener]);
            else listener();
          },
        });
      }
    });
    return operation;
  }

  function remove(project: string, zone: string, name: string): Record<string, unknown> {
    const vm = vms.get(keyOf(project, zone, name));
    if (vm === undefined) throw new FakeApiError(404, 'notFound', `The resource 'projects/${project}/zones/${zone}/instances/${name}' was not found`);
    const operation = newOperation(vm, 'delete');
    destroy(vm, 'deleted', operation);
    return operation;
  }

  function resource(vm: FakeVm): Record<string, unknown> {
    const zoneUrl = `https://www.googleapis.com/compute/v1/projects/${vm.project}/zones/${vm.zone}`;
    return {
      ...vm.body,
      kind: 'compute#instance',
      id: String(Math.abs(hash(vm.name))),
      status: vm.status,
      zone: zoneUrl,
      selfLink: `${zoneUrl}/instances/${vm.name}`,
      machineType: `${zoneUrl}/machineTypes/${String(vm.body.machineType ?? '').split('/').pop() ?? ''}`,
    };
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://fake');
    const body = await readBody(request);
    if (request.headers.authorization !== `Bearer ${token}`) throw new FakeApiError(401, 'authError', 'Request is missing required authentication credential.');
    const match = /^\/compute\/v1\/projects\/([^/]+)\/zones\/([^/]+)\/(instances|operations)(?:\/([^/]+))?(\/wait)?$/.exec(url.pathname);
    if (match === null) throw new FakeApiError(404, 'notFound', `no such path ${url.pathname}`);
    const [, project = '', zone = '', collection, name, wait] = match;
    if (collection === 'instances') {
      if (name === undefined && request.method === 'POST') return sendJson(response, 200, insert(project, zone, parseJson(body), url.searchParams.get('requestId')));
      if (name === undefined && request.method === 'GET') return sendJson(response, 200, list(project, zone, url.searchParams));
      if (name !== undefined && request.method === 'GET') {
        const vm = vms.get(keyOf(project, zone, decodeURIComponent(name)));
        if (vm === undefined) throw new FakeApiError(404, 'notFound', `The resource 'projects/${project}/zones/${zone}/instances/${name}' was not found`);
        return sendJson(response, 200, resource(vm));
      }
      if (name !== undefined && request.method === 'DELETE') return sendJson(response, 200, remove(project, zone, decodeURIComponent(name)));
    }
    if (collection === 'operations' && name !== undefined) {
      const operation = operations.get(`${project}/${zone}/${decodeURIComponent(name)}`);
      if (operation === undefined) throw new FakeApiError(404, 'notFound', `The resource 'projects/${project}/zones/${zone}/operations/${name}' was not found`);
      if (wait !== undefined && request.method === 'POST') {
        // Compute Engine answers when the operation is done, or before its own deadline; this fake within 2 s.
        const until = Date.now() + 2000;
        while (operation.status !== 'DONE' && Date.now() < until && !closed) await sleep(5);
        return sendJson(response, 200, operation);
      }
      if (wait === undefined && request.method === 'GET') return sendJson(response, 200, operation);
    }
    throw new FakeApiError(405, 'badRequest', `${request.method} ${url.pathname} is not supported by this fake`);
  }

  function list(project: string, zone: string, query: URLSearchParams): Record<string, unknown> {
    const filter = parseFilter(query.get('filter') ?? '');
    const maxResults = Number(query.get('maxResults') ?? 500);
    const start = Number(query.get('pageToken') ?? 0);
    const all = [...vms.values()].filter((vm) => vm.project === project && vm.zone === zone && filter(resource(vm)));
    const page = all.slice(start, start + maxResults);
    return {
      kind: 'compute#instanceList',
      items: page.map(resource),
      ...(start + maxResults < all.length ? { nextPageToken: String(start + maxResults) } : {}),
    };
  }

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      const apiError = error instanceof FakeApiError ? error : new FakeApiError(500, 'backendError', String(error));
      sendJson(response, apiError.status, googleErrorBody(apiError));
    });
  });
  await listenForTests(server);
  const { port } = server.address() as AddressInfo;

  return {
    clientOptions: {
      apiEndpoint: '127.0.0.1',
      port,
      protocol: 'http',
      // A fixed token; google-gax's REST transport asks this for each request.
      authClient: {
        getRequestHeaders: async () => new Headers({ authorization: `Bearer ${token}` }),
        fetch: (input: string | URL, init: RequestInit = {}) => {
          const headers = new Headers(init.headers);
          headers.set('authorization', `Bearer ${token}`);
          return fetch(input, { ...init, headers });
        },
      },
    } as unknown as GceClientOptions,
    vms: () => [...vms.values()],
    vm: (name) => [...vms.values()].find((vm) => vm.name === name),
    inserts,
    failNextInsert(code, httpStatus) {
      failNext = { code, httpStatus };
    },
    powerOff(name) {
      const vm = [...vms.values()].find((candidate) => candidate.name === name);
      if (vm !== undefined) powerOff(vm);
    },
    async close() {
      closed = true;
      for (const vm of vms.values()) destroyGuest(vm);
      for (const timer of [...timers, ...runTimers.values()]) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The checks Compute Engine makes of an insert body that the adapter could get wrong. */
function validateInstance(body: unknown, zone: string): GceInstance {
  const invalid = (field: string, why: string) => new FakeApiError(400, 'invalid', `Invalid value for field 'resource.${field}': ${why}`);
  if (typeof body !== 'object' || body === null) throw new FakeApiError(400, 'required', 'Required field \'resource\' not specified');
  const instance = body as GceInstance;
  if (typeof instance.name !== 'string') throw new FakeApiError(400, 'required', "Required field 'resource.name' not specified");
  if (!namePattern.test(instance.name)) throw invalid('name', `'${instance.name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19})'`);
  const machineType = instance.machineType ?? '';
  if (!new RegExp(`^(https://www\\.googleapis\\.com/compute/v1/projects/[^/]+/)?zones/${zone}/machineTypes/[a-z0-9-]+$`).test(machineType)) {
    throw invalid('machineType', `'${machineType}'. Expected zones/${zone}/machineTypes/<type>`);
  }
  const labels = instance.labels ?? {};
  if (Object.keys(labels).length > 64) throw invalid('labels', 'at most 64 labels');
  for (const [key, value] of Object.entries(labels)) {
    if (!labelKeyPattern.test(key)) throw invalid('labels', `label key '${key}' violates format constraints`);
    if (!labelValuePattern.test(value)) throw invalid('labels', `label value '${value}' violates format constraints`);
  }
  const items = instance.metadata?.items ?? [];
  const seen = new Set<string>();
  let total = 0;
  for (const item of items) {
    const key = item.key ?? '';
    if (!metadataKeyPattern.test(key)) throw invalid('metadata', `metadata key '${key}' violates format constraints`);
    if (seen.has(key)) throw invalid('metadata', `duplicate metadata key '${key}'`);
    seen.add(key);
    const bytes = Buffer.byteLength(item.value ?? '');
    if (bytes > 256 * 1024) throw invalid('metadata', `metadata value of '${key}' is over 256 KB`);
    total += bytes + Buffer.byteLength(key);
  }
  if (total > 512 * 1024) throw invalid('metadata', 'metadata is over 512 KB in total');
  const disks = instance.disks ?? [];
  const boot = disks.filter((disk) => disk.boot === true);
  if (boot.length !== 1) throw invalid('disks', 'exactly one boot disk is required');
  if (boot[0]?.initializeParams?.sourceImage === undefined && boot[0]?.source === undefined) {
    throw new FakeApiError(400, 'required', "Required field 'resource.disks[0].initializeParams.sourceImage' not specified");
  }
  if ((instance.networkInterfaces ?? []).length === 0) throw new FakeApiError(400, 'required', "Required field 'resource.networkInterfaces' not specified");
  for (const account of instance.serviceAccounts ?? []) {
    if (typeof account.email !== 'string') throw new FakeApiError(400, 'required', "Required field 'resource.serviceAccounts[0].email' not specified");
  }
  const scheduling = instance.scheduling ?? {};
  const limit = scheduling.maxRunDuration ?? undefined;
  if (limit !== undefined && scheduling.terminationTime !== undefined) throw invalid('scheduling', 'maxRunDuration and terminationTime cannot both be set');
  if (limit !== undefined || scheduling.terminationTime !== undefined) {
    if (scheduling.instanceTerminationAction !== 'STOP' && scheduling.instanceTerminationAction !== 'DELETE') {
      throw invalid('scheduling.instanceTerminationAction', 'must be STOP or DELETE when a time limit is set');
    }
    if (scheduling.preemptible === true) throw invalid('scheduling', 'time limits are not supported on preemptible VMs; use Spot');
  }
  if (limit !== undefined) {
    const seconds = Number(limit.seconds);
    if (!Number.isInteger(seconds) || seconds < 30 || seconds > 120 * 24 * 3600) throw invalid('scheduling.maxRunDuration.seconds', `${String(limit.seconds)}: must be 30 s to 120 days`);
  }
  if (scheduling.provisioningModel !== undefined && !['STANDARD', 'SPOT'].includes(scheduling.provisioningModel ?? '')) {
    throw invalid('scheduling.provisioningModel', String(scheduling.provisioningModel));
  }
  if (scheduling.provisioningModel === 'SPOT') {
    if (scheduling.automaticRestart === true) throw invalid('scheduling.automaticRestart', 'Spot VMs cannot restart automatically');
    if (scheduling.onHostMaintenance !== 'TERMINATE') throw invalid('scheduling.onHostMaintenance', 'Spot VMs must terminate on host maintenance');
  }
  return instance;
}

/** A Compute Engine list filter, for the forms the adapter uses: `labels.K:*`, `labels.K=V`, `name=N`, `status=S`, `!=`, joined by AND. */
function parseFilter(text: string): (resource: Record<string, unknown>) => boolean {
  if (text.trim() === '') return () => true;
  const terms = text.split(/\s+AND\s+|\)\s*\(/).map((term) => term.replace(/^\(|\)$/g, '').trim());
  const tests = terms.map((term) => {
    const match = /^(labels\.[a-z][a-z0-9_-]*|name|status)\s*(=|!=|:)\s*("?)([^"]*)\3$/.exec(term);
    if (match === null) throw new FakeApiError(400, 'invalid', `Invalid value for field 'filter': '${text}'. Invalid list filter expression.`);
    const [, field = '', op, , value = ''] = match;
    return (resource: Record<string, unknown>) => {
      const actual = field.startsWith('labels.') ? (resource.labels as Record<string, string> | undefined)?.[field.slice(7)] : resource[field];
      if (op === ':' && value === '*') return actual !== undefined;
      const equal = actual === value;
      return op === '!=' ? !equal : equal;
    };
  });
  return (resource) => tests.every((test) => test(resource));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new FakeApiError(400, 'parseError', 'This API does not support parsing form-encoded input.');
  }
}

function hash(text: string): number {
  let value = 0;
  for (const char of text) value = (value * 31 + char.charCodeAt(0)) | 0;
  return value;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What the boot-script guest did in one VM. */
export interface BootRecord {
  /** The commands the script ran that the guest stands in for (docker, iptables, systemctl, poweroff), with their arguments. */
  calls: string[][];
  /** The script's output. */
  log: string;
  /** Whether it powered the VM off. */
  poweredOff: boolean;
  /** What the metadata server was asked, as `key` (or `!key` when refused). */
  metadataRequests: string[];
}

/** The boot-script guest, and what it saw. */
export interface BootScriptGuest {
  guest: FakeGuest;
  /** Per VM name, once its script has ended. */
  readonly records: Map<string, BootRecord>;
  /** Live processes of a VM's guest. */
  processes(name: string): number[];
  /** Whether anything of a VM's guest still runs: its processes, or (with the engine) its container. */
  running(name: string): boolean;
  cleanup(): Promise<void>;
}

/** How the boot-script guest runs the script's `docker`. */
export interface BootScriptGuestOptions {
  /**
   * `stand-in` (default): a `docker` that checks its arguments and runs the agent as a process. `engine`: this
   * machine's Docker engine runs the image for real (each VM's container gets a name of its own, and an image that
   * is already here is not pulled); the workers then reach the host at the default bridge's gateway.
   */
  docker?: 'stand-in' | 'engine';
  /** The agent, for the stand-in; default this Node running shared/agent/main.ts. */
  agentCommand?: string[];
}

/**
 * A guest that runs the COS boot script of each VM as Compute Engine would, on this machine: bash, with a metadata
 * server of its own serving the VM's metadata (reached as a proxy, so the script's URL is unchanged), and stand-ins
 * for what only a VM has: `iptables`, `systemctl`, `poweroff`, and `docker` unless the engine is asked for (the
 * stand-in runs the agent as a process, from the image's entrypoint, without the step isolation that needs root).
 * The one change to the script is its state folder, under a temporary one. VMs without a startup script just run.
 */
export async function bootScriptGuest(options: BootScriptGuestOptions = {}): Promise<BootScriptGuest> {
  const root = await mkdtemp(join(tmpdir(), 'hermetic-fake-gce-'));
  const shims = join(root, 'bin');
  await mkdir(shims);
  const agentCommand = options.agentCommand ?? [process.execPath, fileURLToPath(new URL('../../shared/agent/main.ts', import.meta.url))];
  const engine = options.docker === 'engine';
  const realDocker = engine ? spawnSync('bash', ['-c', 'command -v docker'], { encoding: 'utf8' }).stdout.trim() : '';
  if (engine && realDocker === '') throw new Error('no docker program on PATH');
  await writeFile(join(shims, 'docker-shim.mjs'), engine ? dockerEngineShim : dockerShim);
  for (const [program, body] of Object.entries({
    docker: `exec "$HERMETIC_NODE" "$(dirname "$0")/docker-shim.mjs" "$@"`,
    iptables: 'record iptables "$@"',
    systemctl: 'record systemctl "$@"',
    poweroff: 'record poweroff "$@"; touch "$HERMETIC_POWEROFF"',
  })) {
    const script = `#!/bin/bash\nrecord() { "$HERMETIC_NODE" -e 'require("node:fs").appendFileSync(process.env.HERMETIC_CALLS, JSON.stringify(process.argv.slice(1)) + "\\n")' "$@"; }\n${body}\n`;
    await writeFile(join(shims, program), script);
    await chmod(join(shims, program), 0o755);
  }
  const records = new Map<string, BootRecord>();
  const children = new Map<ChildProcess, string>();
  const servers = new Set<Server>();
  // A VM may boot while the fake is being cleaned up: its guest then never starts (nor leaves a server listening).
  let cleanedUp = false;

  const guest: FakeGuest = (booted) => {
    const script = booted.vm.body.metadata?.items?.find((item) => item.key === 'startup-script')?.value;
    if (typeof script !== 'string') return;
    void run(booted, script).catch((error: unknown) => {
      records.set(booted.vm.name, { calls: [], log: `the fake could not run the boot script: ${String(error)}`, poweredOff: false, metadataRequests: [] });
    });
  };

  async function run(booted: BootedVm, script: string): Promise<void> {
    const { vm } = booted;
    const dir = join(root, vm.name);
    await mkdir(join(dir, 'work'), { recursive: true });
    if (cleanedUp) return;
    const metadataRequests: string[] = [];
    const metadata = createServer((request, response) => {
      // A proxy request: the URL is absolute, as the script wrote it.
      const url = new URL(request.url ?? '/', 'http://unknown');
      const key = /^\/computeMetadata\/v1\/instance\/attributes\/([^/]+)$/.exec(url.pathname)?.[1] ?? url.pathname;
      if (url.host !== 'metadata.google.internal' || request.headers['metadata-flavor'] !== 'Google' || request.headers['x-forwarded-for'] !== undefined) {
        metadataRequests.push(`!${key}`);
        response.writeHead(403).end('Missing Metadata-Flavor:Google header.');
        return;
      }
      metadataRequests.push(key);
      const value = vm.body.metadata?.items?.find((item) => item.key === key)?.value;
      if (typeof value !== 'string') response.writeHead(404).end('not found');
      else response.writeHead(200, { 'content-type': 'application/text', 'metadata-flavor': 'Google' }).end(value);
    });
    servers.add(metadata);
    await listenForTests(metadata);
    const proxy = `http://127.0.0.1:${(metadata.address() as AddressInfo).port}`;
    const scriptFile = join(dir, 'startup-script');
    const written = await writeFile(scriptFile, script.replaceAll('/var/lib/hermetic', join(dir, 'state'))).then(
      () => true,
      () => false,
    );
    if (cleanedUp || !written) {
      metadata.close();
      servers.delete(metadata);
      if (!written && !cleanedUp) throw new Error(`cannot write the boot script of ${vm.name}`);
      return;
    }
    const calls = join(dir, 'calls.jsonl');
    const poweroff = join(dir, 'poweroff');
    const log = join(dir, 'boot.log');
    const out = openSync(log, 'a');
    const child = spawn('bash', [scriptFile], {
      detached: true,
      stdio: ['ignore', out, out],
      env: {
        PATH: `${shims}:${process.env.PATH ?? '/usr/bin:/bin'}`,
        http_proxy: proxy,
        no_proxy: '127.0.0.1,localhost',
        HOME: dir,
        HERMETIC_NODE: process.execPath,
        HERMETIC_CALLS: calls,
        HERMETIC_POWEROFF: poweroff,
        HERMETIC_WORKDIR: join(dir, 'work'),
        HERMETIC_AGENT_COMMAND: JSON.stringify(agentCommand),
        // Which guest a process belongs to, of which fake: another fake may boot a VM of the same name at once.
        HERMETIC_GUEST: `${vm.name}@${root}`,
        HERMETIC_CONTAINER: containerOf(vm.name),
        HERMETIC_REAL_DOCKER: realDocker,
      },
    });
    closeSync(out);
    children.set(child, vm.name);
    let destroyed = false;
    booted.onDestroy(() => {
      destroyed = true;
      killGuest(vm.name, child);
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (exitCode) => resolve(exitCode)));
    children.delete(child);
    // On a VM the container goes with the VM; here it is removed with the guest.
    if (engine) removeContainer(vm.name);
    metadata.close();
    servers.delete(metadata);
    const record: BootRecord = {
      calls: existsSync(calls) ? (await readFile(calls, 'utf8')).trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as string[]) : [],
      log: `${await readFile(log, 'utf8')}${code === 0 ? '' : `(the script exited with ${code})\n`}`,
      poweredOff: existsSync(poweroff),
      metadataRequests,
    };
    records.set(vm.name, record);
    // A script that ends without powering off leaves its VM running, as on Compute Engine.
    if (!destroyed && record.poweredOff) booted.powerOff();
  }

  function processes(name: string): number[] {
    return scanProcesses(({ env }) => env.includes(`HERMETIC_GUEST=${name}@${root}`));
  }

  function containerOf(name: string): string {
    return `${name}-${(root.split('-').pop() ?? '').toLowerCase()}`;
  }

  function removeContainer(name: string): void {
    spawnSync(realDocker, ['rm', '--force', containerOf(name)], { stdio: 'ignore' });
  }

  function containerRunning(name: string): boolean {
    if (!engine) return false;
    const found = spawnSync(realDocker, ['ps', '--quiet', '--filter', `name=^/${containerOf(name)}$`], { encoding: 'utf8' });
    return found.stdout.trim() !== '';
  }

  function killGuest(name: string, child?: ChildProcess): void {
    if (engine) removeContainer(name);
    if (child?.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    // Steps the agent put in process groups of their own, too: the VM is gone.
    for (const pid of processes(name)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
  }

  return {
    guest,
    records,
    processes,
    running: (name) => processes(name).length > 0 || containerRunning(name),
    async cleanup() {
      cleanedUp = true;
      for (const [child, name] of children) killGuest(name, child);
      for (const server of servers) server.close();
      // A guest killed a moment ago may still be finishing a write into its folder: rm retries ENOTEMPTY.
      await rm(root, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    },
  };
}

/**
 * The `docker` stand-in: records its arguments; `run` checks them and runs the image's entrypoint as a process (the
 * agent with the bind-mounted spec), without `--isolate-steps`, which needs root and a container.
 */
const dockerShim = `import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
const args = process.argv.slice(2);
appendFileSync(process.env.HERMETIC_CALLS, JSON.stringify(['docker', ...args]) + '\\n');
if (args[0] !== 'run') process.exit(0);
const withValue = new Set(['--name', '--network', '--cap-drop', '--cap-add', '--security-opt', '--pids-limit', '--mount']);
let spec;
let index = 1;
for (; index < args.length && args[index].startsWith('-'); index++) {
  const flag = args[index];
  if (!withValue.has(flag)) { console.error('docker stand-in: unexpected flag ' + flag); process.exit(125); }
  const value = args[++index];
  if (flag === '--mount') {
    const fields = Object.fromEntries(value.split(',').map((part) => [part.split('=')[0], part.split('=')[1] ?? 'true']));
    if (fields.type === 'bind' && fields.target === '/etc/hermetic/task.json' && fields.readonly === 'true') spec = fields.source;
  }
}
const image = args[index];
const extra = args.slice(index + 1);
if (image === undefined || spec === undefined) { console.error('docker stand-in: no image, or no read-only spec mount'); process.exit(125); }
if (extra.some((arg) => arg !== '--step-network')) { console.error('docker stand-in: unexpected arguments ' + extra.join(' ')); process.exit(125); }
const agent = JSON.parse(process.env.HERMETIC_AGENT_COMMAND);
const child = spawn(agent[0], [...agent.slice(1), '--workdir', process.env.HERMETIC_WORKDIR, '--spec', spec], { stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? 128));
`;

/**
 * The `docker` in front of the engine: records its arguments; skips pulling an image that is already here (tests
 * build theirs, no registry has it); gives `run`'s container the VM's own name, so VMs side by side do not collide.
 */
const dockerEngineShim = `import { spawnSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
const args = process.argv.slice(2);
appendFileSync(process.env.HERMETIC_CALLS, JSON.stringify(['docker', ...args]) + '\\n');
const docker = process.env.HERMETIC_REAL_DOCKER;
if (args[0] === 'pull' && spawnSync(docker, ['image', 'inspect', args[1]], { stdio: 'ignore' }).status === 0) process.exit(0);
const named = args.map((arg, index) => (args[0] === 'run' && args[index - 1] === '--name' ? process.env.HERMETIC_CONTAINER : arg));
const run = spawnSync(docker, named, { stdio: 'inherit' });
process.exit(run.status ?? 125);
`;
