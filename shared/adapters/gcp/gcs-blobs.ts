import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { File, Storage } from '@google-cloud/storage';
import { PermanentError, RetryableError } from '../../core/errors.ts';
import { assertBlobKey, assertSignOptions, type BlobStore } from '../../ports/blobs.ts';
import { headersFragment } from '../../core/model/signed-url.ts';

/** The bucket, the client the composition root made, and the thresholds of resumable uploads. */
export interface GcsBlobsOptions {
  /** Made by the composition root; the adapter never creates a client. */
  storage: Storage;
  bucket: string;
  /** An object or stream that reaches this many bytes goes up as a resumable upload; a smaller one in one request. Default 8 MiB. */
  resumableFromBytes?: number;
  /** The size of each request of a resumable upload; a multiple of 256 KiB. Default 8 MiB. */
  chunkBytes?: number;
  /**
   * A signed PUT URL whose `maxBytes` is at least this starts a resumable upload session (a signed POST with
   * `x-goog-resumable: start`) instead of taking one PUT; the agent's uploader knows both. Default 32 MiB.
   */
  resumableUrlFromBytes?: number;
  /**
   * Where IAM Credentials `signBlob` is asked to sign, when the client holds no private key (Cloud Functions);
   * the client's default is Google's endpoint. With a key in the client's credentials, URLs are signed locally.
   */
  signingEndpoint?: string;
  /** ms since the epoch; signed URLs are dated by it. */
  now?: () => number;
}

const MiB = 1 << 20;
const CHUNK_GRANULE = 256 * 1024;

/**
 * A blob store in one Cloud Storage bucket. Every write makes a new generation, so readers see the old object or the
 * new one whole. Signed URLs are V4: GET, and PUT capped by a signed `x-goog-content-length-range` header that the
 * URL's fragment tells the uploader to send. Failures of the service reject as RetryableError, bad input as
 * PermanentError or the port's invalid-key Error.
 */
export function createGcsBlobs(options: GcsBlobsOptions): BlobStore {
  const { storage } = options;
  const resumableFromBytes = options.resumableFromBytes ?? 8 * MiB;
  const chunkBytes = options.chunkBytes ?? 8 * MiB;
  const resumableUrlFromBytes = options.resumableUrlFromBytes ?? 32 * MiB;
  const now = options.now ?? Date.now;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0 || chunkBytes % CHUNK_GRANULE !== 0) {
    throw new Error(`chunkBytes must be a positive multiple of ${CHUNK_GRANULE}, got ${chunkBytes}`);
  }
  const bucket = storage.bucket(options.bucket);
  const file = (key: string): File => {
    assertBlobKey(key);
    return bucket.file(key);
  };
  const tooLarge = (key: string, maxBytes: number): PermanentError =>
    new PermanentError(`blob ${JSON.stringify(key)} is larger than the limit of ${maxBytes} bytes`);

  /** Turns a client failure into the port's errors: 4xx but 408/429 are permanent, the rest worth retrying. */
  const failure = (what: string, key: string, error: unknown): Error => {
    const status = statusOf(error);
    const message = `cloud storage ${what} of ${JSON.stringify(key)} in bucket ${options.bucket} failed`;
    if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
      return new PermanentError(`${message}: HTTP ${status}`, { cause: error });
    }
    return new RetryableError(status === undefined ? message : `${message}: HTTP ${status}`, { cause: error });
  };

  /** The whole object in one multipart request: it exists only once the request succeeded. */
  const saveWhole = async (key: string, target: File, data: Buffer): Promise<void> => {
    try {
      await target.save(data, { resumable: false, contentType: 'application/octet-stream', validation: 'crc32c' });
    } catch (error) {
      throw failure('upload', key, error);
    }
  };

  const store: BlobStore = {
    async put(key, data) {
      const target = file(key);
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
      // A large object (a sharded build's merged log, say) goes up in chunks, as a large stream does.
      if (bytes.byteLength >= resumableFromBytes) {
        await store.putStream(key, (async function* () {
          yield bytes;
        })());
        return;
      }
      await saveWhole(key, target, bytes);
    },

    async putStream(key, source, streamOptions) {
      const target = file(key);
      const maxBytes = streamOptions?.maxBytes;
      const iterator = source[Symbol.asyncIterator]();
      let bytes = 0;
      /** The source's next chunk, counted against the limit; undefined once it ends. */
      const pull = async (): Promise<Buffer | undefined> => {
        const next = await iterator.next();
        if (next.done === true) return undefined;
        bytes += next.value.byteLength;
        if (maxBytes !== undefined && bytes > maxBytes) throw tooLarge(key, maxBytes);
        return Buffer.from(next.value);
      };
      // Small streams are gathered and sent in one request; only a large one pays for an upload session.
      const head: Buffer[] = [];
      let ended = false;
      try {
        while (bytes < resumableFromBytes) {
          const chunk = await pull();
          if (chunk === undefined) {
            ended = true;
            break;
          }
          head.push(chunk);
        }
      } catch (error) {
        await iterator.return?.().catch(() => undefined);
        throw error;
      }
      if (ended) {
        await saveWhole(key, target, Buffer.concat(head));
        return { bytes };
      }

      let sourceError: unknown;
      let exhausted = false;
      async function* rest(): AsyncGenerator<Buffer> {
        try {
          yield* head;
          head.length = 0;
          for (let chunk = await pull(); chunk !== undefined; chunk = await pull()) yield chunk;
          exhausted = true;
        } catch (error) {
          sourceError = error;
          throw error;
        } finally {
          // An upload that failed on its own, or a limit we hit, leaves the source unfinished: let it clean up.
          if (!exhausted) await iterator.return?.().catch(() => undefined);
        }
      }
      let session: string | undefined;
      // The object appears only when the last chunk declares the total: a failure before that leaves nothing, and
      // the destroyed stream aborts the request in flight.
      const upload = target.createWriteStream({
        resumable: true,
        chunkSize: chunkBytes,
        contentType: 'application/octet-stream',
        validation: 'crc32c',
      });
      upload.on('uri', (uri: string) => (session = uri));
      try {
        await pipeline(Readable.from(rest()), upload);
      } catch (error) {
        if (session !== undefined) cancelSession(session);
        if (sourceError !== undefined) throw sourceError;
        throw failure('resumable upload', key, error);
      }
      return { bytes };
    },

    async get(key) {
      const target = file(key);
      try {
        const [data] = await target.download({ validation: 'crc32c' });
        return new Uint8Array(data);
      } catch (error) {
        if (statusOf(error) === 404) return undefined;
        throw failure('download', key, error);
      }
    },

    async getStream(key) {
      const target = file(key);
      const stream = target.createReadStream({ validation: 'crc32c' });
      // The request goes out on the first read; waiting for its answer here pins the generation being served, so a
      // replace after getStream resolves cannot change what this stream yields.
      const answered = await new Promise<{ status: number } | { error: unknown }>((resolve) => {
        stream.once('response', (response: { statusCode?: number; status?: number }) =>
          resolve({ status: response.statusCode ?? response.status ?? 0 }),
        );
        stream.once('error', (error: unknown) => resolve({ error }));
        stream.read(0);
      });
      if ('error' in answered) {
        stream.destroy();
        if (statusOf(answered.error) === 404) return undefined;
        throw failure('download', key, answered.error);
      }
      if (answered.status === 404) {
        // The client reports the 404 as an error once it has read the body; nobody is listening for it then.
        stream.on('error', () => undefined);
        stream.destroy();
        return undefined;
      }
      return stream;
    },

    async exists(key) {
      const target = file(key);
      try {
        const [found] = await target.exists();
        return found;
      } catch (error) {
        throw failure('lookup', key, error);
      }
    },

    async list(prefix) {
      try {
        const [files] = await bucket.getFiles({ prefix, autoPaginate: true });
        return files.map((found) => found.name).sort();
      } catch (error) {
        throw failure('listing', `${prefix}*`, error);
      }
    },

    async delete(key) {
      const target = file(key);
      try {
        await target.delete({ ignoreNotFound: true });
      } catch (error) {
        throw failure('delete', key, error);
      }
    },

    async signUrl(key, sign) {
      const target = file(key);
      assertSignOptions(sign);
      const { maxBytes } = sign;
      // V4 signatures count whole seconds and the client rounds down: the URL dies at or before expiresAt, never after.
      const common = {
        version: 'v4' as const,
        expires: sign.expiresAt,
        accessibleAt: new Date(Math.floor(now() / 1000) * 1000),
        ...(options.signingEndpoint === undefined ? {} : { signingEndpoint: options.signingEndpoint }),
      };
      try {
        if (sign.method === 'GET') {
          const [url] = await target.getSignedUrl({ ...common, action: 'read' });
          return url;
        }
        // The cap is a signed header, so GCS itself refuses a bigger body; the fragment (never sent) tells the
        // uploader which headers the signature covers, and for a large object that it must start a session.
        const headers: Record<string, string> = maxBytes === undefined ? {} : { 'x-goog-content-length-range': `0,${maxBytes}` };
        const resumable = maxBytes !== undefined && maxBytes >= resumableUrlFromBytes;
        const [url] = await target.getSignedUrl({ ...common, action: resumable ? 'resumable' : 'write', extensionHeaders: headers });
        if (resumable) headers['x-goog-resumable'] = 'start';
        return `${url}${headersFragment(headers)}`;
      } catch (error) {
        throw new Error(`cannot sign a ${sign.method} URL for ${JSON.stringify(key)}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      }
    },
  };
  return store;
}

/** Cancels an unfinished upload session, so nobody can complete it later; best effort, as an open one expires anyway. */
function cancelSession(uri: string): void {
  // The session URI is its own credential: GCS takes a DELETE on it with no other authentication.
  void fetch(uri, { method: 'DELETE' }).then(
    (response) => response.arrayBuffer(),
    () => undefined,
  );
}

/** The HTTP status a client error carries, if any. */
function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = 'code' in error ? error.code : undefined;
  if (typeof code === 'number') return code;
  const response = 'response' in error ? error.response : undefined;
  if (typeof response === 'object' && response !== null && 'status' in response && typeof response.status === 'number') {
    return response.status;
  }
  return undefined;
}
