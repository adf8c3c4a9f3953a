import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBlobHandler } from '../../shared/adapters/local/blob-server.ts';
import { createFolderBlobs } from '../../shared/adapters/local/folder-blobs.ts';
import { createUrlSigner, type UrlSigner } from '../../shared/adapters/local/url-signer.ts';
import { StoreFullError, type BlobStore } from '../../shared/ports/blobs.ts';
import { listenForTests } from '../fakes/http.ts';
import { createMemoryBlobs } from '../fakes/memory-blobs.ts';
import { blobsContract, withBlobServer } from './blobs.contract.ts';
import { waitUntil } from '../helpers/wait.ts';

blobsContract(
  'folder',
  withBlobServer(async (signer) => {
    const root = await mkdtemp(join(tmpdir(), 'hermetic-blobs-'));
    return { store: createFolderBlobs({ root, signer }), cleanup: () => rm(root, { recursive: true, force: true }) };
  }),
  { blobServer: true },
);

blobsContract(
  'memory',
  withBlobServer(async (signer) => ({ store: createMemoryBlobs({ signer }), cleanup: async () => undefined })),
  { blobServer: true },
);

describe('folder blobs only', () => {
  let dir: string;
  let root: string;
  let outside: string;
  let store: BlobStore;
  let server: Server;
  let signer: UrlSigner;
  const errors: Error[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hermetic-folder-'));
    // A root that does not exist yet: the store must create it.
    root = join(dir, 'store', 'root');
    outside = join(dir, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'secret.txt'), 'outside secret');
    server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    signer = createUrlSigner({ baseUrl: `http://127.0.0.1:${address.port}`, secret: randomBytes(32) });
    store = createFolderBlobs({ root, signer });
    const handler = createBlobHandler({ store, signer, onError: (error) => errors.push(error) });
    server.on('request', (req, res) => void handler(req, res));
  });

  after(async () => {
    server.close();
    server.closeAllConnections();
    await rm(dir, { recursive: true, force: true });
  });

  const allEntries = async (): Promise<string[]> => (await readdir(root, { recursive: true })).map(String).sort();
  const expiresAt = (): number => Date.now() + 60_000;

  it('keeps each object as a plain file at root/key', async () => {
    await store.put('layout/a/b', 'x');
    assert.equal(await readFile(join(root, 'layout', 'a', 'b'), 'utf8'), 'x');
  });

  it('leaves no temp file after failed uploads', async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(5);
      throw new Error('source broke');
    }
    async function* big(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(5);
      yield new Uint8Array(5);
    }
    await assert.rejects(store.putStream('tmp/a', failing()), /source broke/);
    await assert.rejects(store.putStream('tmp/b', big(), { maxBytes: 7 }), /larger than/);
    const over = await fetch(signer.sign('tmp/c', { method: 'PUT', expiresAt: expiresAt(), maxBytes: 7 }), {
      method: 'PUT',
      body: new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(5));
          controller.enqueue(new Uint8Array(5));
          controller.close();
        },
      }),
      duplex: 'half',
    });
    assert.equal(over.status, 413);
    await over.arrayBuffer();

    const controller = new AbortController();
    let step = 0;
    const abandoned = fetch(signer.sign('tmp/d', { method: 'PUT', expiresAt: expiresAt() }), {
      method: 'PUT',
      signal: controller.signal,
      duplex: 'half',
      body: new ReadableStream<Uint8Array>({
        async pull(stream) {
          if (step++ === 0) stream.enqueue(new Uint8Array(5));
          else await new Promise(() => undefined);
        },
      }),
    });
    // Wait until the server has made the temp file, so the abort really happens mid-upload.
    await waitUntil(async () => (await allEntries()).some((name) => name.startsWith(join('tmp', 'd~'))), 'the upload is in progress', { everyMs: 5 });
    controller.abort();
    await assert.rejects(abandoned);
    await waitUntil(async () => !(await allEntries()).some((name) => name.includes('~')), 'the temporary file is gone', { everyMs: 5 });
    assert.deepEqual((await allEntries()).filter((name) => name.startsWith('tmp')), ['tmp']);
    assert.deepEqual(await store.list('tmp/'), []);
  });

  it('refuses a symlinked folder on a key path, for reads and writes', async () => {
    await symlink(outside, join(root, 'evil'));
    await assert.rejects(store.get('evil/secret.txt'), /refusing to follow a symlink/);
    await assert.rejects(store.getStream('evil/secret.txt'), /refusing to follow a symlink/);
    await assert.rejects(store.exists('evil/secret.txt'), /refusing to follow a symlink/);
    await assert.rejects(store.put('evil/planted', 'x'), /refusing to follow a symlink/);
    await assert.rejects(store.put('evil/deeper/planted', 'x'), /refusing to follow a symlink/);
    await assert.rejects(store.delete('evil/secret.txt'), /refusing to follow a symlink/);
    assert.deepEqual((await readdir(outside)).sort(), ['secret.txt']);
    assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'outside secret');
    assert.deepEqual(await store.list('evil'), []);

    const response = await fetch(signer.sign('evil/secret.txt', { method: 'GET', expiresAt: expiresAt() }));
    assert.equal(response.status, 500);
    assert.doesNotMatch(await response.text(), /secret/);
    const write = await fetch(signer.sign('evil/planted', { method: 'PUT', expiresAt: expiresAt() }), { method: 'PUT', body: 'x' });
    assert.equal(write.status, 500);
    await write.arrayBuffer();
    assert.deepEqual((await readdir(outside)).sort(), ['secret.txt']);
    assert.ok(errors.length >= 2);
    errors.length = 0;
  });

  it('never reads through a symlink as an object; put replaces the link and delete removes it', async () => {
    const link = join(root, 'link');
    await symlink(join(outside, 'secret.txt'), link);
    await assert.rejects(store.get('link'), /refusing to follow a symlink/);
    await assert.rejects(store.getStream('link'), /refusing to follow a symlink/);
    await assert.rejects(store.exists('link'), /refusing to follow a symlink/);
    assert.deepEqual(await store.list('link'), []);
    await store.delete('link');
    await assert.rejects(lstat(link), /ENOENT/);

    await symlink(join(outside, 'secret.txt'), link);
    await store.put('link', 'mine');
    assert.ok((await lstat(link)).isFile());
    assert.deepEqual(await store.get('link'), new TextEncoder().encode('mine'));
    assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'outside secret');
  });

  it('cannot hold an object and a folder under the same key', async () => {
    await store.put('clash/d/x', 'x');
    await assert.rejects(store.put('clash/d', 'y'), /is a folder of other objects/);
    assert.equal(await store.get('clash/d'), undefined);
    assert.equal(await store.exists('clash/d'), false);
    await store.delete('clash/d');
    assert.deepEqual(await store.list('clash/'), ['clash/d/x']);
    await store.put('clash/f', 'f');
    await assert.rejects(store.put('clash/f/g', 'g'), /a parent of it is an object/);
    assert.equal(await store.get('clash/f/g'), undefined);
    assert.equal(await store.exists('clash/f/g'), false);
    assert.deepEqual(await store.list('clash/'), ['clash/d/x', 'clash/f']);
    assert.deepEqual((await allEntries()).filter((name) => name.includes('~')), []);
  });
});

describe('blob endpoint over a store with no room', () => {
  it('answers a PUT with 507 and a reason, and reports the refusal apart from its failures', async () => {
    const signer = createUrlSigner({ baseUrl: 'http://127.0.0.1:1', secret: randomBytes(32) });
    const memory = createMemoryBlobs({ signer });
    const full = new StoreFullError('no room for blob "results/x.json": 0 bytes free of 64 MiB on the file system of /data/blobs');
    const store: BlobStore = {
      ...memory,
      async putStream(_key, source) {
        for await (const chunk of source) void chunk;
        throw full;
      },
    };
    const refused: Array<[string, Error]> = [];
    const errors: Error[] = [];
    const handler = createBlobHandler({ store, signer, onError: (error) => errors.push(error), onStoreFull: (key, error) => refused.push([key, error]) });
    const server = createServer((req, res) => void handler(req, res));
    const port = await listenForTests(server);
    try {
      const url = new URL(await signer.sign('results/x.json', { method: 'PUT', expiresAt: Date.now() + 60_000 }));
      url.host = `127.0.0.1:${port}`;
      const response = await fetch(url, { method: 'PUT', body: '{}' });
      assert.equal(response.status, 507);
      assert.equal(await response.text(), 'insufficient storage: the blob store has no room');
      assert.deepEqual(refused, [['results/x.json', full]]);
      assert.deepEqual(errors, []);
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });
});

describe('url signer', () => {
  const secret = randomBytes(32);

  it('refuses a short secret', () => {
    assert.throws(() => createUrlSigner({ baseUrl: 'http://x', secret: new Uint8Array(8) }), /at least 16 bytes/);
  });

  it('refuses invalid keys and options when signing', () => {
    const signer = createUrlSigner({ baseUrl: 'http://x/', secret });
    assert.throws(() => signer.sign('../x', { method: 'GET', expiresAt: 1 }), /invalid blob key/);
    assert.throws(() => signer.sign('a', { method: 'GET', expiresAt: 1.5 }), /expiresAt/);
    assert.throws(() => signer.sign('a', { method: 'PUT', expiresAt: 1, maxBytes: -1 }), /maxBytes/);
    assert.match(signer.sign('a/b', { method: 'GET', expiresAt: 1 }), /^http:\/\/x\/blobs\/a\/b\?m=GET&e=1&s=[0-9a-f]{64}$/);
  });

  it('verifies only what it signed, with its own secret, until expiry', () => {
    let now = 1000;
    const signer = createUrlSigner({ baseUrl: 'http://x', secret, now: () => now });
    const params = new URL(signer.sign('k', { method: 'PUT', expiresAt: 2000, maxBytes: 5 })).searchParams;
    assert.deepEqual(signer.verify('PUT', 'k', params), { ok: true, maxBytes: 5 });
    assert.deepEqual(signer.verify('GET', 'k', params), { ok: false, status: 403, reason: 'wrong method' });
    assert.deepEqual(signer.verify('PUT', 'k2', params), { ok: false, status: 403, reason: 'bad signature' });
    assert.deepEqual(signer.verify('PUT', '%2e%2e', params), { ok: false, status: 403, reason: 'invalid key' });
    const extra = new URLSearchParams(params);
    extra.set('z', '1');
    assert.deepEqual(signer.verify('PUT', 'k', extra), { ok: false, status: 403, reason: 'malformed signature' });
    const other = createUrlSigner({ baseUrl: 'http://x', secret: randomBytes(32), now: () => now });
    assert.deepEqual(other.verify('PUT', 'k', params), { ok: false, status: 403, reason: 'bad signature' });
    now = 2000;
    assert.deepEqual(signer.verify('PUT', 'k', params), { ok: false, status: 403, reason: 'expired' });
  });
});
