import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createBlobHandler } from '../../shared/adapters/local/blob-server.ts';
import { createUrlSigner, type UrlSigner } from '../../shared/adapters/local/url-signer.ts';
import { signedRequest } from '../../shared/core/model/signed-url.ts';
import type { BlobStore } from '../../shared/ports/blobs.ts';

const INVALID_KEYS = ['../x', '/abs', 'a//b', 'a/./b', '', 'a b', '%2e%2e', 'a/', 'a/..', 'a\\b', 'a/b\n'];
const DEFAULT_MAX_BYTES = 1024 * 1024;

/** Why the URL-serving side refused a request; each side words its refusals its own way. */
export type Refusal = 'badSignature' | 'noSignature' | 'wrongMethod' | 'expired' | 'repeated';

/**
 * An adapter under test: its store, and the side that serves its signed URLs (the embedded blob server, or the
 * fake Cloud Storage) as seen from outside.
 */
export interface BlobsHarness {
  store: BlobStore;
  /** Keys the URL-serving side reported as finalized, in order: what would wake the collector. */
  finalized: readonly string[];
  /** Failures the URL-serving side reported; tests clear it after provoking one. */
  serverErrors: Error[];
  /** Resolves once the URL-serving side has read the first bytes of an upload to `key`. */
  uploadStarted(key: string): Promise<void>;
  /** The status of an upload refused for being over its URL's limit. */
  tooLargeStatus: number;
  /** What a refusal's body says, by reason. */
  refusals: Record<Refusal, RegExp>;
  /** The query parameter that holds the signature (hex), and the one that holds the expiry (a number). */
  signatureParam: string;
  expiryParam: string;
  /** The URL with its size limit replaced, or dropped when undefined, without signing it again. */
  withLimit(url: string, maxBytes: number | undefined): string;
  cleanup(): Promise<void>;
}

/** What a harness is built from: the contract's clock, which the signer and the URL-serving side must both use. */
export interface HarnessContext {
  now: () => number;
}

/** The blob-server-only part of the suite needs the server's origin. */
export interface BlobServerHarness extends BlobsHarness {
  baseUrl: string;
}

/**
 * Every BlobStore must pass this suite unchanged. The store part runs on the store alone; the signed-URL part over
 * real HTTP against the adapter's own URL-serving side, with a clock the suite controls. Pass `blobServer` to also run
 * the part specific to the embedded blob server (its URL format, raw paths, methods and default limit).
 */
export function blobsContract(adapterName: string, make: (context: HarnessContext) => Promise<BlobsHarness>): void;
export function blobsContract(
  adapterName: string,
  make: (context: HarnessContext) => Promise<BlobServerHarness>,
  options: { blobServer: true },
): void;
export function blobsContract(
  adapterName: string,
  make: (context: HarnessContext) => Promise<BlobsHarness | BlobServerHarness>,
  options?: { blobServer: true },
): void {
  describe(`blobs contract: ${adapterName}`, { timeout: 300_000 }, () => {
    let harness: BlobsHarness;
    let store: BlobStore;
    let clock = Date.now();
    let finalized: readonly string[] = [];
    let handlerErrors: Error[] = [];

    before(async () => {
      harness = await make({ now: () => clock });
      store = harness.store;
      finalized = harness.finalized;
      handlerErrors = harness.serverErrors;
    });

    after(async () => {
      await harness.cleanup();
    });

    const inAMinute = (): number => clock + 60_000;
    const signGet = (key: string): Promise<string> => store.signUrl(key, { method: 'GET', expiresAt: inAMinute() });
    const signPut = (key: string, maxBytes?: number): Promise<string> =>
      store.signUrl(key, maxBytes === undefined ? { method: 'PUT', expiresAt: inAMinute() } : { method: 'PUT', expiresAt: inAMinute(), maxBytes });
    /** fetch, sending the headers a signed URL asks for, as the agent's uploader does. */
    const send = (url: string, init: RequestInit = {}): Promise<Response> => {
      const target = signedRequest(url);
      return fetch(target.url, { ...init, headers: { ...target.headers, ...(init.headers as Record<string, string> | undefined) } });
    };
    const fetchBytes = async (url: string): Promise<{ status: number; body: Uint8Array; response: Response }> => {
      const response = await send(url);
      return { status: response.status, body: new Uint8Array(await response.arrayBuffer()), response };
    };
    const allBytes = (): Uint8Array => Uint8Array.from({ length: 256 }, (_, i) => i);
    async function* chunksOf(...chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
      yield* chunks;
    }
    const collect = async (stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> => {
      const parts: Uint8Array[] = [];
      for await (const part of stream) parts.push(part);
      return new Uint8Array(Buffer.concat(parts));
    };

    describe('store', () => {
      it('round-trips binary data and text', async () => {
        await store.put('rt/binary.bin', allBytes());
        assert.deepEqual(await store.get('rt/binary.bin'), allBytes());
        await store.put('rt/text.txt', 'héllo\n');
        assert.deepEqual(await store.get('rt/text.txt'), new TextEncoder().encode('héllo\n'));
        const stream = await store.getStream('rt/binary.bin');
        assert.ok(stream !== undefined);
        assert.deepEqual(await collect(stream), allBytes());
      });

      it('copies data in and out, so callers cannot change a stored object', async () => {
        const data = new Uint8Array([1, 2, 3]);
        await store.put('rt/copy', data);
        data[0] = 9;
        const got = await store.get('rt/copy');
        assert.ok(got !== undefined);
        got[1] = 9;
        assert.deepEqual(await store.get('rt/copy'), new Uint8Array([1, 2, 3]));
      });

      it('replaces an object on put, and stores empty objects', async () => {
        await store.put('rt/replace', 'old');
        await store.put('rt/replace', 'new');
        assert.deepEqual(await store.get('rt/replace'), new TextEncoder().encode('new'));
        await store.put('rt/empty', new Uint8Array(0));
        assert.deepEqual(await store.get('rt/empty'), new Uint8Array(0));
        assert.equal(await store.exists('rt/empty'), true);
      });

      it('reports missing objects as undefined / false, and deletes idempotently', async () => {
        assert.equal(await store.get('missing/one'), undefined);
        assert.equal(await store.getStream('missing/one'), undefined);
        assert.equal(await store.exists('missing/one'), false);
        await store.delete('missing/one');
        await store.put('del/x', 'x');
        assert.equal(await store.exists('del/x'), true);
        await store.delete('del/x');
        await store.delete('del/x');
        assert.equal(await store.exists('del/x'), false);
        assert.equal(await store.get('del/x'), undefined);
        assert.deepEqual(await store.list('del/'), []);
      });

      it('lists keys sorted, by string prefix', async () => {
        for (const key of ['lst/b', 'lst/a/2', 'lst/a/1', 'lst/ab', 'lst/a.txt', 'lstx/c', 'lst/a/deep/er/z']) {
          await store.put(key, key);
        }
        assert.deepEqual(await store.list('lst/'), ['lst/a.txt', 'lst/a/1', 'lst/a/2', 'lst/a/deep/er/z', 'lst/ab', 'lst/b']);
        assert.deepEqual(await store.list('lst/a'), ['lst/a.txt', 'lst/a/1', 'lst/a/2', 'lst/a/deep/er/z', 'lst/ab']);
        assert.deepEqual(await store.list('lst/a/'), ['lst/a/1', 'lst/a/2', 'lst/a/deep/er/z']);
        assert.deepEqual(await store.list('lst/a/d'), ['lst/a/deep/er/z']);
        assert.deepEqual(await store.list('lst/b'), ['lst/b']);
        assert.deepEqual(await store.list('lst'), ['lst/a.txt', 'lst/a/1', 'lst/a/2', 'lst/a/deep/er/z', 'lst/ab', 'lst/b', 'lstx/c']);
        assert.deepEqual(await store.list('lst/nothing'), []);
        assert.deepEqual(await store.list('nowhere/'), []);
        assert.deepEqual(await store.list('../'), []);
        const everything = await store.list('');
        assert.deepEqual(everything, [...everything].sort());
        assert.ok(everything.includes('lstx/c') && everything.includes('lst/a/1'));
        await store.delete('lst/a/1');
        assert.deepEqual(await store.list('lst/a/'), ['lst/a/2', 'lst/a/deep/er/z']);
      });

      it('rejects invalid keys in every operation', async () => {
        for (const key of INVALID_KEYS) {
          const label = JSON.stringify(key);
          await assert.rejects(store.put(key, 'x'), /invalid blob key/, `put ${label}`);
          await assert.rejects(store.putStream(key, chunksOf(new Uint8Array(1))), /invalid blob key/, `putStream ${label}`);
          await assert.rejects(store.get(key), /invalid blob key/, `get ${label}`);
          await assert.rejects(store.getStream(key), /invalid blob key/, `getStream ${label}`);
          await assert.rejects(store.exists(key), /invalid blob key/, `exists ${label}`);
          await assert.rejects(store.delete(key), /invalid blob key/, `delete ${label}`);
          await assert.rejects(store.signUrl(key, { method: 'GET', expiresAt: inAMinute() }), /invalid blob key/, `signUrl ${label}`);
        }
        for (const key of await store.list('')) assert.doesNotMatch(key, /(^|\/)\.\.?(\/|$)|\/\/|^\/|[^A-Za-z0-9._\-/]/);
      });

      it('putStream assembles chunks and counts bytes', async () => {
        const result = await store.putStream('ps/ok', chunksOf(new Uint8Array([1, 2]), new Uint8Array(0), new Uint8Array([3])));
        assert.deepEqual(result, { bytes: 3 });
        assert.deepEqual(await store.get('ps/ok'), new Uint8Array([1, 2, 3]));
        assert.deepEqual(await store.putStream('ps/exact', chunksOf(new Uint8Array(4)), { maxBytes: 4 }), { bytes: 4 });
      });

      it('putStream past maxBytes rejects and writes nothing, keeping any old object', async () => {
        await assert.rejects(
          store.putStream('ps/big', chunksOf(new Uint8Array(3), new Uint8Array(3)), { maxBytes: 5 }),
          /larger than the limit of 5 bytes/,
        );
        assert.equal(await store.exists('ps/big'), false);
        assert.deepEqual(await store.list('ps/big'), []);
        await store.put('ps/kept', 'old');
        await assert.rejects(store.putStream('ps/kept', chunksOf(new Uint8Array(6)), { maxBytes: 5 }), /larger than/);
        assert.deepEqual(await store.get('ps/kept'), new TextEncoder().encode('old'));
      });

      it('putStream whose source fails writes nothing', async () => {
        await store.put('ps/fail', 'old');
        async function* failing(): AsyncGenerator<Uint8Array> {
          yield new Uint8Array(10);
          throw new Error('source broke');
        }
        await assert.rejects(store.putStream('ps/fail', failing()), /source broke/);
        await assert.rejects(store.putStream('ps/fail-new', failing()), /source broke/);
        assert.deepEqual(await store.get('ps/fail'), new TextEncoder().encode('old'));
        assert.equal(await store.exists('ps/fail-new'), false);
        assert.deepEqual(await store.list('ps/fail'), ['ps/fail']);
      });

      it('putStream is invisible until the stream ends', async () => {
        await store.put('atomic/old', 'old');
        let release = (): void => undefined;
        const gate = new Promise<void>((resolve) => (release = resolve));
        let started = (): void => undefined;
        const firstChunk = new Promise<void>((resolve) => (started = resolve));
        async function* slow(): AsyncGenerator<Uint8Array> {
          yield new TextEncoder().encode('ne');
          started();
          await gate;
          yield new TextEncoder().encode('w');
        }
        const replacing = store.putStream('atomic/old', slow());
        const creating = store.putStream('atomic/new', chunksOf(new Uint8Array(0)));
        await creating;
        const fresh = (async function* (): AsyncGenerator<Uint8Array> {
          yield new Uint8Array([7]);
          await gate;
        })();
        const creatingSlowly = store.putStream('atomic/fresh', fresh);
        await firstChunk;
        await new Promise((resolve) => setTimeout(resolve, 20));
        assert.deepEqual(await store.get('atomic/old'), new TextEncoder().encode('old'));
        assert.equal(await store.exists('atomic/fresh'), false);
        assert.equal(await store.get('atomic/fresh'), undefined);
        assert.deepEqual(await store.list('atomic/'), ['atomic/new', 'atomic/old']);
        release();
        assert.deepEqual(await replacing, { bytes: 3 });
        await creatingSlowly;
        assert.deepEqual(await store.get('atomic/old'), new TextEncoder().encode('new'));
        assert.deepEqual(await store.get('atomic/fresh'), new Uint8Array([7]));
        assert.deepEqual(await store.list('atomic/'), ['atomic/fresh', 'atomic/new', 'atomic/old']);
      });

      it('a stream opened before a replace still reads the old object whole', async () => {
        const old = new Uint8Array(300_000).fill(1);
        await store.put('atomic/reader', old);
        const stream = await store.getStream('atomic/reader');
        assert.ok(stream !== undefined);
        await store.put('atomic/reader', new Uint8Array(10).fill(2));
        assert.deepEqual(await collect(stream), old);
      });
    });

    describe('signed URLs over HTTP', () => {
      it('serves a signed GET, small with a length and large streamed', async () => {
        await store.put('get/small', allBytes());
        const small = await fetchBytes(await signGet('get/small'));
        assert.equal(small.status, 200);
        assert.equal(small.response.headers.get('content-type'), 'application/octet-stream');
        assert.equal(small.response.headers.get('content-length'), '256');
        assert.deepEqual(small.body, allBytes());

        const big = randomBytes(1_000_000);
        await store.put('get/big', big);
        const large = await fetchBytes(await signGet('get/big'));
        assert.equal(large.status, 200);
        assert.deepEqual(large.body, new Uint8Array(big));

        await store.put('get/empty', new Uint8Array(0));
        const empty = await fetchBytes(await signGet('get/empty'));
        assert.equal(empty.status, 200);
        assert.equal(empty.response.headers.get('content-length'), '0');
        assert.equal(empty.body.byteLength, 0);
      });

      it('answers 404 to a signed GET of a missing object', async () => {
        const response = await send(await signGet('get/missing'));
        assert.equal(response.status, 404);
        await response.arrayBuffer();
      });

      it('stores a signed PUT and reports it finalized exactly once per upload', async () => {
        const url = await signPut('put/result.json', 1000);
        const before = finalized.length;
        const first = await send(url, { method: 'PUT', body: allBytes() });
        assert.equal(first.status, 200);
        await first.arrayBuffer();
        assert.deepEqual(await store.get('put/result.json'), allBytes());
        assert.deepEqual(finalized.slice(before), ['put/result.json']);

        const second = await send(url, { method: 'PUT', body: 'again' });
        assert.equal(second.status, 200);
        await second.arrayBuffer();
        assert.deepEqual(await store.get('put/result.json'), new TextEncoder().encode('again'));
        assert.deepEqual(finalized.slice(before), ['put/result.json', 'put/result.json']);

        const streamed = await send(await signPut('put/streamed', 1000), {
          method: 'PUT',
          body: streamOf([new Uint8Array([1, 2]), new Uint8Array([3])]),
          duplex: 'half',
        });
        assert.equal(streamed.status, 200);
        await streamed.arrayBuffer();
        assert.deepEqual(await store.get('put/streamed'), new Uint8Array([1, 2, 3]));
        assert.deepEqual(finalized.slice(before), ['put/result.json', 'put/result.json', 'put/streamed']);
        assert.deepEqual(handlerErrors, []);
      });

      it('refuses a PUT over maxBytes and stores nothing', async () => {
        // Written before counting: a store's own writes are finalized too where the backend says so (GCS).
        await store.put('put/keep', 'old');
        const before = finalized.length;
        const url = await signPut('put/big', 100);
        const declared = await send(url, { method: 'PUT', body: new Uint8Array(101) });
        assert.equal(declared.status, harness.tooLargeStatus);
        await declared.arrayBuffer();
        const chunked = await send(url, {
          method: 'PUT',
          body: streamOf([new Uint8Array(60), new Uint8Array(60)]),
          duplex: 'half',
        });
        assert.equal(chunked.status, harness.tooLargeStatus);
        await chunked.arrayBuffer();
        assert.equal(await store.exists('put/big'), false);

        const over = await send(await signPut('put/keep', 2), { method: 'PUT', body: streamOf([new Uint8Array(3)]), duplex: 'half' });
        assert.equal(over.status, harness.tooLargeStatus);
        await over.arrayBuffer();
        assert.deepEqual(await store.get('put/keep'), new TextEncoder().encode('old'));

        const exact = await send(url, { method: 'PUT', body: new Uint8Array(100) });
        assert.equal(exact.status, 200);
        await exact.arrayBuffer();
        assert.deepEqual(finalized.slice(before), ['put/big']);
      });

      it('refuses tampered, misused and expired URLs with 403', async () => {
        await store.put('sig/obj', 'secret');
        await store.put('sig/other', 'other');
        const get = new URL(await signGet('sig/obj'));
        const put = await signPut('sig/obj', 100);
        const { signatureParam, expiryParam, refusals: why } = harness;
        const refusals: Array<{ label: string; url: string; method?: string; reason: RegExp }> = [];
        const withParam = (url: URL, name: string, value: string | undefined): string => {
          const copy = new URL(url);
          if (value === undefined) copy.searchParams.delete(name);
          else copy.searchParams.set(name, value);
          return copy.toString();
        };
        const signature = get.searchParams.get(signatureParam) ?? '';
        assert.match(signature, /^[0-9a-f]+$/);
        const flipped = (signature[0] === '0' ? '1' : '0') + signature.slice(1);
        const expiry = get.searchParams.get(expiryParam) ?? '';
        assert.match(expiry, /^\d+$/);
        refusals.push({ label: 'tampered signature', url: withParam(get, signatureParam, flipped), reason: why.badSignature });
        refusals.push({ label: 'no signature', url: withParam(get, signatureParam, undefined), reason: why.noSignature });
        refusals.push({ label: 'other key', url: get.toString().replace('/sig/obj?', '/sig/other?'), reason: why.badSignature });
        refusals.push({ label: 'longer expiry', url: withParam(get, expiryParam, String(Number(expiry) + 1)), reason: why.badSignature });
        refusals.push({ label: 'GET with PUT URL', url: put, reason: why.wrongMethod });
        refusals.push({ label: 'PUT with GET URL', url: get.toString(), method: 'PUT', reason: why.wrongMethod });
        refusals.push({ label: 'raised maxBytes', url: harness.withLimit(put, 1_000_000), method: 'PUT', reason: why.badSignature });
        refusals.push({ label: 'dropped maxBytes', url: harness.withLimit(put, undefined), method: 'PUT', reason: why.badSignature });
        refusals.push({ label: 'repeated expiry', url: `${get.toString()}&${expiryParam}=${expiry}`, reason: why.repeated });
        for (const { label, url, method, reason } of refusals) {
          const response = await send(url, method === 'PUT' ? { method, body: 'evil' } : {});
          assert.equal(response.status, 403, label);
          assert.match(await response.text(), reason, label);
        }
        assert.deepEqual(await store.get('sig/obj'), new TextEncoder().encode('secret'));

        // The suite's clock may run ahead of the real one, never behind: a signing library may refuse a past expiry.
        clock = Math.max(clock, Date.now());
        const soon = await store.signUrl('sig/obj', { method: 'GET', expiresAt: clock + 1000 });
        assert.equal((await fetchBytes(soon)).status, 200);
        clock += 1000;
        const expired = await send(soon);
        assert.equal(expired.status, 403);
        assert.match(await expired.text(), why.expired);
      });

      it('lets readers see the old object until a slow PUT ends, never part of the new one', async () => {
        await store.put('slow/obj', 'old-object');
        const before = finalized.length;
        let release = (): void => undefined;
        const gate = new Promise<void>((resolve) => (release = resolve));
        const seenReplace = harness.uploadStarted('slow/obj');
        const seenCreate = harness.uploadStarted('slow/new');
        const slowBody = (): ReadableStream<Uint8Array> => {
          let step = 0;
          return new ReadableStream<Uint8Array>({
            async pull(controller) {
              if (step++ === 0) {
                controller.enqueue(new TextEncoder().encode('new-'));
                return;
              }
              await gate;
              controller.enqueue(new TextEncoder().encode('object'));
              controller.close();
            },
          });
        };
        const replacing = send(await signPut('slow/obj', 1000), { method: 'PUT', body: slowBody(), duplex: 'half' });
        const creating = send(await signPut('slow/new', 1000), { method: 'PUT', body: slowBody(), duplex: 'half' });
        await Promise.all([seenReplace, seenCreate]);
        const getOld = await signGet('slow/obj');
        const getNew = await signGet('slow/new');
        for (let i = 0; i < 5; i++) {
          const old = await fetchBytes(getOld);
          assert.equal(old.status, 200);
          assert.equal(new TextDecoder().decode(old.body), 'old-object');
          assert.deepEqual(await store.get('slow/obj'), new TextEncoder().encode('old-object'));
          const absent = await send(getNew);
          assert.equal(absent.status, 404);
          await absent.arrayBuffer();
          assert.equal(await store.exists('slow/new'), false);
          assert.deepEqual(await store.list('slow/'), ['slow/obj']);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        assert.equal(finalized.length, before);
        release();
        for (const response of await Promise.all([replacing, creating])) {
          assert.equal(response.status, 200);
          await response.arrayBuffer();
        }
        assert.equal(new TextDecoder().decode((await fetchBytes(getOld)).body), 'new-object');
        assert.equal(new TextDecoder().decode((await fetchBytes(getNew)).body), 'new-object');
        assert.deepEqual(finalized.slice(before).sort(), ['slow/new', 'slow/obj']);
      });

      it('stores nothing from a PUT the client abandons midway', async () => {
        const before = finalized.length;
        const seenChunk = harness.uploadStarted('abandon/x');
        const controller = new AbortController();
        let step = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(stream) {
            if (step++ === 0) stream.enqueue(new Uint8Array(10));
            else await new Promise(() => undefined);
          },
        });
        const response = send(await signPut('abandon/x', 1000), { method: 'PUT', body, duplex: 'half', signal: controller.signal });
        await seenChunk;
        controller.abort();
        await assert.rejects(response);
        // The server learns of the abort asynchronously; give it a moment, then nothing may be there.
        for (let i = 0; i < 50 && handlerErrors.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
        assert.equal(await store.exists('abandon/x'), false);
        assert.equal(finalized.length, before);
        handlerErrors.length = 0;
      });
    });

    if (options?.blobServer === true) {
      describe('the embedded blob server', () => {
        const baseUrl = (): string => (harness as BlobServerHarness).baseUrl;

        it('has the documented URL shape', async () => {
          const url = new URL(await signPut('shape/x', 10));
          assert.equal(`${url.origin}${url.pathname}`, `${baseUrl()}/blobs/shape/x`);
          assert.deepEqual([...url.searchParams.keys()], ['m', 'e', 'x', 's']);
          assert.equal(url.searchParams.get('m'), 'PUT');
          assert.equal(url.searchParams.get('e'), String(inAMinute()));
          assert.equal(url.searchParams.get('x'), '10');
          assert.match(url.searchParams.get('s') ?? '', /^[0-9a-f]{64}$/);
          assert.equal(url.hash, '');
        });

        it('applies the default limit to a PUT URL that carries none', async () => {
          const url = await signPut('put/default');
          const response = await fetch(url, { method: 'PUT', body: new Uint8Array(DEFAULT_MAX_BYTES + 1) });
          assert.equal(response.status, 413);
          await response.arrayBuffer();
          assert.equal(await store.exists('put/default'), false);
        });

        it('refuses a PUT URL relabelled GET, and a repeated method', async () => {
          await store.put('sig/relabel', 'x');
          const put = new URL(await signPut('sig/relabel', 100));
          const relabelled = new URL(put);
          relabelled.searchParams.set('m', 'GET');
          const bad = await fetch(relabelled);
          assert.equal(bad.status, 403);
          assert.match(await bad.text(), /bad signature/);
          const get = await signGet('sig/relabel');
          const repeated = await fetch(`${get}&m=PUT`);
          assert.equal(repeated.status, 403);
          assert.match(await repeated.text(), /malformed/);
        });

        it('refuses raw paths that a client would normally normalize', async () => {
          await store.put('raw/b', 'b');
          const query = new URL(await signGet('raw/b')).search;
          for (const path of ['/blobs/raw/x/../b', '/blobs/raw/./b', '/blobs/raw//b', '/blobs/raw/%62', '/blobs/%2e%2e/raw/b', '/blobs/']) {
            const { status } = await rawRequest(baseUrl(), 'GET', `${path}${query}`);
            assert.equal(status, 403, path);
          }
          assert.equal((await rawRequest(baseUrl(), 'GET', `/blobs/raw/b${query}`)).status, 200);
        });

        it('answers 404 outside /blobs/ and 405 to other methods', async () => {
          const outside = await fetch(`${baseUrl()}/other/thing`);
          assert.equal(outside.status, 404);
          await outside.arrayBuffer();
          await store.put('sig/obj', 'secret');
          const url = await signGet('sig/obj');
          for (const method of ['DELETE', 'POST', 'HEAD', 'PATCH']) {
            const response = await fetch(url, { method });
            assert.equal(response.status, 405, method);
            await response.arrayBuffer();
          }
        });
      });
    }
  });
}

/**
 * A harness for a store whose URLs the embedded blob server serves: an HTTP server on a free port, the HMAC signer
 * on the contract's clock, and the store made from that signer.
 */
export function withBlobServer(
  makeStore: (signer: UrlSigner) => Promise<{ store: BlobStore; cleanup(): Promise<void> }>,
): (context: HarnessContext) => Promise<BlobServerHarness> {
  return async ({ now }) => {
    let handle: ReturnType<typeof createBlobHandler> | undefined;
    const server: Server = createServer((req, res) => {
      if (handle === undefined) {
        res.writeHead(503).end();
        return;
      }
      void handle(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    const baseUrl = `http://127.0.0.1:${address.port}`;
    const signer = createUrlSigner({ baseUrl, secret: randomBytes(32), now });
    const made = await makeStore(signer);
    const { store } = made;
    const finalized: string[] = [];
    const serverErrors: Error[] = [];
    // Lets a test learn that the server has started consuming an upload, so it can read during the upload.
    const chunkListeners = new Map<string, () => void>();
    const tapped: BlobStore = {
      ...store,
      putStream: (key, source, options) => store.putStream(key, tap(key, source), options),
    };
    async function* tap(key: string, source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
      for await (const chunk of source) {
        chunkListeners.get(key)?.();
        yield chunk;
      }
    }
    handle = createBlobHandler({
      store: tapped,
      signer,
      defaultMaxBytes: DEFAULT_MAX_BYTES,
      onFinalized: (key) => finalized.push(key),
      onError: (error) => serverErrors.push(error),
    });
    return {
      store,
      baseUrl,
      finalized,
      serverErrors,
      uploadStarted: (key) =>
        new Promise<void>((resolve) =>
          chunkListeners.set(key, () => {
            chunkListeners.delete(key);
            resolve();
          }),
        ),
      tooLargeStatus: 413,
      refusals: {
        badSignature: /bad signature/,
        noSignature: /malformed/,
        wrongMethod: /wrong method/,
        expired: /^expired$/,
        repeated: /malformed/,
      },
      signatureParam: 's',
      expiryParam: 'e',
      withLimit: (url, maxBytes) => {
        const copy = new URL(url);
        if (maxBytes === undefined) copy.searchParams.delete('x');
        else copy.searchParams.set('x', String(maxBytes));
        return copy.toString();
      },
      async cleanup() {
        server.close();
        server.closeAllConnections();
        await made.cleanup();
      },
    };
  };
}

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

/** An HTTP request with the path sent byte for byte, as `fetch` would normalize `..` and `.` segments away. */
function rawRequest(baseUrl: string, method: string, path: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, method, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
