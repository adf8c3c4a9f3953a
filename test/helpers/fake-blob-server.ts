import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { blobKeys, type TaskSpec } from '../../shared/core/model/wire.ts';
import { listenForTests } from '../fakes/http.ts';

/** One accepted PUT, as it arrived. */
export interface RecordedPut {
  key: string;
  body: Buffer;
}

/** A stand-in for the signed-URL blob server: GET serves objects, PUT stores them, and faults can be injected. */
export interface FakeBlobServer {
  readonly baseUrl: string;
  /** Objects by key: what tests put there to serve, and what PUTs stored. */
  readonly objects: Map<string, Buffer>;
  /** Every accepted PUT, in arrival order. */
  readonly puts: RecordedPut[];
  /** A URL for the key that looks signed (it carries a query a worker must never leak). */
  url(key: string): string;
  /** Answers the next `times` PUTs of `key` with `status` (every one, when times is Infinity). */
  failPuts(key: string, status: number, times?: number): void;
  /** Delays every answer to a PUT of a key starting with `prefix` by `ms`. */
  delayPuts(prefix: string, ms: number): void;
  /** The PUT bodies received for a key, in order. */
  putsOf(key: string): Buffer[];
  close(): Promise<void>;
}

/** Starts the fake server on a free port of `host` (default 127.0.0.1; a container network's gateway for containers). */
export async function startFakeBlobServer(options: { host?: string } = {}): Promise<FakeBlobServer> {
  const host = options.host ?? '127.0.0.1';
  const objects = new Map<string, Buffer>();
  const puts: RecordedPut[] = [];
  const faults = new Map<string, { status: number; times: number }>();
  const delays: { prefix: string; ms: number }[] = [];

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const key = decodeURIComponent(url.pathname.replace(/^\/blobs\//, ''));
    if (request.method === 'GET') {
      const body = objects.get(key);
      if (body === undefined) {
        response.writeHead(404).end('no such object');
        return;
      }
      response.writeHead(200, { 'content-length': body.length }).end(body);
      return;
    }
    if (request.method === 'PUT') {
      const parts: Buffer[] = [];
      for await (const part of request) parts.push(part as Buffer);
      const delay = delays.find((entry) => key.startsWith(entry.prefix));
      if (delay !== undefined) await new Promise((resolve) => setTimeout(resolve, delay.ms));
      const fault = faults.get(key);
      if (fault !== undefined && fault.times > 0) {
        fault.times--;
        response.writeHead(fault.status).end('injected failure');
        return;
      }
      const body = Buffer.concat(parts);
      objects.set(key, body);
      puts.push({ key, body });
      response.writeHead(200).end();
      return;
    }
    response.writeHead(405).end();
  };

  const server = createServer((request, response) => {
    handle(request, response).catch(() => response.destroy());
  });
  const port = await listenForTests(server, host);
  const baseUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  return {
    baseUrl,
    objects,
    puts,
    url: (key) => `${baseUrl}/blobs/${key}?expires=9999999999999&signature=not-for-steps`,
    failPuts(key, status, times = 1) {
      faults.set(key, { status, times });
    },
    delayPuts(prefix, ms) {
      delays.push({ prefix, ms });
    },
    putsOf: (key) => puts.filter((put) => put.key === key).map((put) => put.body),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** One entry of a hand-made tarball. */
export interface TarEntry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink';
  body?: string;
  linkpath?: string;
  mode?: number;
}

/** A gzipped tarball with exactly these entries, names untouched (so it can hold `..` and absolute paths). */
export function tarball(entries: readonly TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const body = Buffer.from(entry.body ?? '');
    const type = entry.type ?? 'File';
    const header = new Header({
      path: entry.path,
      mode: entry.mode ?? (type === 'Directory' ? 0o755 : 0o644),
      size: type === 'File' ? body.length : 0,
      type,
      mtime: new Date(0),
      uid: 0,
      gid: 0,
      ...(entry.linkpath === undefined ? {} : { linkpath: entry.linkpath }),
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (type === 'File' && body.length > 0) {
      blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

/** What a test asks of a task spec pointing at the fake server. */
export interface TestSpecOptions {
  steps: string[][];
  env?: Record<string, string>;
  /** ms since the epoch; defaults to ten minutes from now. */
  deadline?: number;
  chunks?: number;
  chunkBytes?: number;
  /** The source tarball's entries (a small default tree when absent), or 'missing' for no tarball at all. */
  source?: readonly TarEntry[] | 'missing';
  /** How much the source may unpack to (1 GiB in 100,000 entries when absent). */
  unpack?: TaskSpec['unpack'];
}

/** A TaskSpec whose signed-looking URLs point at `server`, with its source tarball in place there. */
export function taskSpecFor(server: FakeBlobServer, taskId: string, options: TestSpecOptions): TaskSpec {
  const sourceKey = blobKeys.source('test', taskId);
  if (options.source !== 'missing') {
    server.objects.set(sourceKey, tarball(options.source ?? [{ path: 'README', body: 'a test source tree\n' }]));
  }
  return {
    v: 1,
    taskId,
    builder: 'test',
    attempt: 1,
    steps: options.steps.map((argv, index) => ({ name: `step-${index}`, argv })),
    env: options.env ?? {},
    deadline: options.deadline ?? Date.now() + 600_000,
    source: { url: server.url(sourceKey) },
    unpack: options.unpack ?? { maxBytes: 1 << 30, maxEntries: 100_000 },
    log: {
      chunkUrls: Array.from({ length: options.chunks ?? 4 }, (_, index) => server.url(blobKeys.logChunk(taskId, index))),
      chunkBytes: options.chunkBytes ?? 64 * 1024,
    },
    result: { url: server.url(blobKeys.result(taskId)) },
  };
}

/** The log as uploaded to `server`: each chunk's latest body, in order, up to the first missing one. */
export function uploadedLog(server: FakeBlobServer, taskId: string): string {
  const parts: Buffer[] = [];
  for (let index = 0; ; index++) {
    const body = server.objects.get(blobKeys.logChunk(taskId, index));
    if (body === undefined) break;
    parts.push(body);
  }
  return Buffer.concat(parts).toString('utf8');
}
