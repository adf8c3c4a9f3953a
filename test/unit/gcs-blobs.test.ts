import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Storage } from '@google-cloud/storage';
import { createGcsBlobs } from '../../shared/adapters/gcp/gcs-blobs.ts';
import { ObjectFinalized } from '../../shared/adapters/gcp/object-notification.ts';
import { putWithRetry } from '../../shared/agent/put-with-retry.ts';
import { headersFragment, signedRequest } from '../../shared/core/model/signed-url.ts';
import type { BlobStore } from '../../shared/ports/blobs.ts';
import { createTestServiceAccount, startFakeGcs, type FakeGcs, type FakeObjectResource } from '../fakes/gcs-server.ts';
import { waitUntil } from '../helpers/wait.ts';

const BUCKET = 'hermetic-gcs-unit';
const KiB = 1024;

describe('gcs blobs: large objects, resumable uploads and signed headers', { timeout: 300_000 }, () => {
  let fake: FakeGcs;
  let store: BlobStore;
  const finalized: string[] = [];
  const resources: FakeObjectResource[] = [];
  let cut: ((name: string, held: number) => boolean) | undefined;

  before(async () => {
    const account = createTestServiceAccount();
    fake = await startFakeGcs({
      buckets: [BUCKET],
      serviceAccount: account,
      onFinalized: (object) => {
        finalized.push(object.name);
        resources.push(object);
      },
      cutSessionUpload: (name, held) => cut?.(name, held) ?? false,
    });
    const storage = new Storage({ apiEndpoint: fake.url, projectId: 'test-project', credentials: account.credentials });
    // Small thresholds, so a few hundred KiB exercise the paths megabytes take in production.
    store = createGcsBlobs({ storage, bucket: BUCKET, resumableFromBytes: 256 * KiB, chunkBytes: 256 * KiB, resumableUrlFromBytes: 512 * KiB });
  });

  after(async () => {
    await fake.close();
  });

  beforeEach(() => {
    cut = undefined;
    fake.requests.length = 0;
  });

  async function* pieces(data: Buffer, size: number, fail?: { after: number; error: Error }): AsyncGenerator<Uint8Array> {
    for (let at = 0; at < data.byteLength; at += size) {
      if (fail !== undefined && at >= fail.after) throw fail.error;
      yield data.subarray(at, at + size);
    }
  }
  const waitForNoSessions = () => waitUntil(() => fake.openSessions() === 0, 'no upload session is open', { everyMs: 10 });

  it('puts a small object in one request and a large one (a long merged log) as a chunked resumable upload', async () => {
    await store.put('logs/short.txt', 'a short log\n');
    assert.deepEqual(fake.requests, ['json:insert-multipart']);
    fake.requests.length = 0;
    const long = randomBytes(600 * KiB).toString('hex');
    await store.put('logs/long.txt', long);
    assert.deepEqual(fake.requests, ['json:insert-resumable', ...Array<string>(5).fill('json:session-put')]);
    assert.equal(fake.object(BUCKET, 'logs/long.txt')?.data.toString(), long);
  });

  it('sends a small stream in one request and a large one as a chunked resumable upload', async () => {
    const small = randomBytes(100 * KiB);
    assert.deepEqual(await store.putStream('big/small', pieces(small, 30 * KiB)), { bytes: small.byteLength });
    assert.deepEqual(fake.requests, ['json:insert-multipart']);

    fake.requests.length = 0;
    const large = randomBytes(700 * KiB + 123);
    assert.deepEqual(await store.putStream('big/large', pieces(large, 64 * KiB)), { bytes: large.byteLength });
    // 700 KiB in 256 KiB chunks: three PUTs to the session, the last declaring the total.
    assert.deepEqual(fake.requests, ['json:insert-resumable', 'json:session-put', 'json:session-put', 'json:session-put']);
    assert.ok(fake.object(BUCKET, 'big/large')?.data.equals(large));
    assert.deepEqual(await store.get('big/large'), new Uint8Array(large));
    const stream = await store.getStream('big/large');
    assert.ok(stream !== undefined);
    const parts: Uint8Array[] = [];
    for await (const part of stream) parts.push(part);
    assert.ok(Buffer.concat(parts).equals(large));
  });

  it('writes nothing, and cancels the session, when the source fails after chunks went up', async () => {
    await store.put('big/kept', 'old');
    const data = randomBytes(900 * KiB);
    const before = finalized.length;
    async function* breaksAfterAChunk(): AsyncGenerator<Uint8Array> {
      yield* pieces(data.subarray(0, 600 * KiB), 64 * KiB);
      // Fail only once the server holds a chunk, so the failure comes mid-session.
      await waitUntil(() => fake.requests.includes('json:session-put'), 'the server holds a chunk', { everyMs: 5 });
      throw new Error('tar broke');
    }
    await assert.rejects(store.putStream('big/kept', breaksAfterAChunk()), /tar broke/);
    assert.ok(fake.requests.includes('json:session-put'), 'a chunk was committed first');
    assert.deepEqual(await store.get('big/kept'), new TextEncoder().encode('old'));
    await waitForNoSessions();
    assert.equal(fake.openSessions(), 0);
    assert.ok(fake.requests.includes('json:session-delete'));
    assert.equal(finalized.length, before);
  });

  it('aborts a resumable upload past maxBytes, writing nothing', async () => {
    const data = randomBytes(800 * KiB);
    await assert.rejects(
      store.putStream('big/over', pieces(data, 64 * KiB), { maxBytes: 600 * KiB }),
      /larger than the limit of 614400 bytes/,
    );
    assert.equal(await store.exists('big/over'), false);
    await waitForNoSessions();
    assert.equal(fake.openSessions(), 0);
  });

  it('signs the size cap as a header that the agent’s uploader sends', async () => {
    const url = await store.signUrl('signed/chunk', { method: 'PUT', expiresAt: Date.now() + 60_000, maxBytes: 100 });
    const { url: bare, headers } = signedRequest(url);
    assert.deepEqual(headers, { 'x-goog-content-length-range': '0,100' });
    assert.match(new URL(bare).searchParams.get('X-Goog-SignedHeaders') ?? '', /^host;x-goog-content-length-range$/);
    await putWithRetry(url, new Uint8Array(100), { what: 'log chunk 0', baseDelayMs: 1 });
    assert.equal(fake.object(BUCKET, 'signed/chunk')?.data.byteLength, 100);
    // Refused for its size: a 400 is not retried, and the old object stays.
    await assert.rejects(putWithRetry(url, new Uint8Array(101), { what: 'log chunk 0', baseDelayMs: 1 }), /log chunk 0: HTTP 400/);
    assert.equal(fake.requests.filter((label) => label === 'xml:put').length, 2);
    assert.equal(fake.object(BUCKET, 'signed/chunk')?.data.byteLength, 100);
    // Without the header the signature does not hold.
    const response = await fetch(bare, { method: 'PUT', body: 'x' });
    assert.equal(response.status, 403);
    assert.match(await response.text(), /SignatureDoesNotMatch/);
  });

  it('signs a large PUT as a resumable session start, which the uploader completes', async () => {
    const url = await store.signUrl('snapshots/k/tree.tar.gz', { method: 'PUT', expiresAt: Date.now() + 60_000, maxBytes: 2048 * KiB });
    assert.deepEqual(signedRequest(url).headers, { 'x-goog-content-length-range': `0,${2048 * KiB}`, 'x-goog-resumable': 'start' });
    const snapshot = randomBytes(1500 * KiB);
    const before = finalized.length;
    await putWithRetry(url, new Blob([snapshot]), { what: 'snapshot', contentType: 'application/gzip', baseDelayMs: 1 });
    assert.deepEqual(fake.requests, ['xml:resumable-start', 'xml:session-put']);
    const stored = fake.object(BUCKET, 'snapshots/k/tree.tar.gz');
    assert.ok(stored?.data.equals(snapshot));
    assert.equal(stored?.resource.contentType, 'application/gzip');
    assert.deepEqual(finalized.slice(before), ['snapshots/k/tree.tar.gz']);
    // What the fake announces is the object resource a bucket notification carries: landed's schema reads it.
    const event = resources[resources.length - 1];
    assert.deepEqual(ObjectFinalized.parse(event), {
      bucket: BUCKET,
      name: 'snapshots/k/tree.tar.gz',
      generation: stored?.resource.generation,
      size: String(snapshot.byteLength),
    });
  });

  it('resumes a snapshot upload where a cut connection left it, sending only the rest', async () => {
    const url = await store.signUrl('snapshots/cut/tree.tar.gz', { method: 'PUT', expiresAt: Date.now() + 60_000, maxBytes: 4096 * KiB });
    const snapshot = randomBytes(3000 * KiB);
    let cuts = 0;
    let heldAtCut = 0;
    cut = (name, held) => {
      if (name !== 'snapshots/cut/tree.tar.gz' || cuts > 0 || held < 1000 * KiB) return false;
      cuts++;
      heldAtCut = held;
      return true;
    };
    const sentBefore = fake.sessionBytes();
    await putWithRetry(url, new Blob([snapshot]), { what: 'snapshot', baseDelayMs: 1 });
    assert.equal(cuts, 1);
    assert.ok(heldAtCut >= 1000 * KiB);
    // Start, the cut PUT, the status query, and one PUT of the rest.
    assert.deepEqual(fake.requests, ['xml:resumable-start', 'xml:session-put', 'xml:session-put', 'xml:session-put']);
    assert.ok(fake.object(BUCKET, 'snapshots/cut/tree.tar.gz')?.data.equals(snapshot));
    // Every byte crossed once: the resumed PUT began where the session stood, not at 0.
    assert.equal(fake.sessionBytes() - sentBefore, snapshot.byteLength);
  });

  it('refuses a snapshot over the signed cap, keeping nothing', async () => {
    const url = await store.signUrl('snapshots/over/tree.tar.gz', { method: 'PUT', expiresAt: Date.now() + 60_000, maxBytes: 600 * KiB });
    await assert.rejects(putWithRetry(url, new Blob([randomBytes(700 * KiB)]), { what: 'snapshot', baseDelayMs: 1 }), /snapshot: upload failed: HTTP 400/);
    assert.equal(await store.exists('snapshots/over/tree.tar.gz'), false);
    assert.equal(fake.openSessions(), 0);
  });

  it('refuses options it cannot sign, before any signing', async () => {
    await assert.rejects(store.signUrl('k', { method: 'GET', expiresAt: 1.5 }), /expiresAt must be a non-negative integer/);
    await assert.rejects(store.signUrl('k', { method: 'PUT', expiresAt: Date.now() + 60_000, maxBytes: -1 }), /maxBytes must be/);
    await assert.rejects(store.signUrl('../k', { method: 'GET', expiresAt: Date.now() + 60_000 }), /invalid blob key/);
    // V4 signatures live seven days at most.
    await assert.rejects(store.signUrl('k', { method: 'GET', expiresAt: Date.now() + 8 * 24 * 3600_000 }), /cannot sign a GET URL for "k": .*seven days/);
  });

  it('keeps header fragments to x-goog-* names', () => {
    assert.equal(headersFragment({}), '');
    assert.throws(() => headersFragment({ authorization: 'Bearer x' }), /cannot carry header "authorization"/);
    assert.throws(() => signedRequest('http://h/x#authorization=Bearer%20x'), /malformed header fragment/);
    assert.deepEqual(signedRequest('http://h/x?a=1'), { url: 'http://h/x?a=1', headers: {} });
  });
});
