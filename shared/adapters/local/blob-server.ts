import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { PermanentError, ensureError } from '../../core/errors.ts';
import { StoreFullError, type BlobStore } from '../../ports/blobs.ts';
import type { UrlSigner } from './url-signer.ts';

export interface BlobHandlerOptions {
  store: BlobStore;
  signer: UrlSigner;
  /** Called once per successful PUT, after the object is in place and the 200 is sent; a throw goes to onError. */
  onFinalized?: (key: string) => void;
  /** The size limit for a PUT whose URL carries none; without either, a PUT is unlimited. */
  defaultMaxBytes?: number;
  /** Sees every failure the handler answered with a 500 or a cut connection; nothing is logged otherwise. */
  onError?: (error: Error) => void;
  /** Sees each PUT answered with 507 because the store had no room for it (a StoreFullError naming what is left). */
  onStoreFull?: (key: string, error: StoreFullError) => void;
}

const PREFIX = '/blobs/';
// Objects up to this size are buffered to send a Content-Length; larger ones stream chunked.
const PEEK_BYTES = 64 * 1024;

/**
 * An HTTP handler for `/blobs/<key>` that serves signed GET and PUT requests over any BlobStore. It never throws:
 * refusals are 403/404/405/413 with a short plain-text reason, a store with no room is a 507 reported to `onStoreFull`,
 * and other failures are a 500 reported to `onError`.
 */
export function createBlobHandler(
  options: BlobHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { store, signer } = options;

  const report = (error: unknown): void => {
    try {
      options.onError?.(ensureError(error));
    } catch {
      // A failing error callback must not turn into an unhandled rejection in the server.
    }
  };

  const serveGet = async (key: string, res: ServerResponse): Promise<void> => {
    const stream = await store.getStream(key);
    if (stream === undefined) return reply(res, 404, 'not found');
    const iterator = stream[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let size = 0;
    try {
      while (size <= PEEK_BYTES) {
        const next = await iterator.next();
        if (next.done === true) {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
          res.end(Buffer.concat(head));
          return;
        }
        head.push(next.value);
        size += next.value.byteLength;
      }
    } catch (error) {
      await iterator.return?.();
      throw error;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    await pipeline(async function* () {
      try {
        yield* head;
        for (;;) {
          const next = await iterator.next();
          if (next.done === true) return;
          yield next.value;
        }
      } finally {
        await iterator.return?.();
      }
    }, res);
  };

  const servePut = async (
    key: string,
    signedMaxBytes: number | undefined,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> => {
    const limit = signedMaxBytes ?? options.defaultMaxBytes;
    const declared = req.headers['content-length'];
    if (limit !== undefined && declared !== undefined && Number(declared) > limit) {
      return refuseBody(req, res, 413, 'too large');
    }
    let tooLarge = false;
    // Not destroying the request when iteration stops keeps the socket open for the 413 or 500 answer.
    const body = req.iterator({ destroyOnReturn: false });
    async function* counted(): AsyncGenerator<Uint8Array> {
      let seen = 0;
      for await (const chunk of body) {
        const bytes: Uint8Array = chunk;
        seen += bytes.byteLength;
        if (limit !== undefined && seen > limit) {
          tooLarge = true;
          throw new PermanentError(`upload of ${key} is larger than ${limit} bytes`);
        }
        yield bytes;
      }
    }
    try {
      await store.putStream(key, counted(), limit === undefined ? {} : { maxBytes: limit });
    } catch (error) {
      // The store's own error may be of any shape; our counter knows whether the limit was the reason.
      if (tooLarge) return refuseBody(req, res, 413, 'too large');
      if (error instanceof StoreFullError) {
        // The worker is told why, but not where: the store's paths and sizes are this machine's business.
        refuseBody(req, res, 507, 'insufficient storage: the blob store has no room');
        try {
          options.onStoreFull?.(key, error);
        } catch (callbackError) {
          report(callbackError);
        }
        return;
      }
      report(error);
      return refuseBody(req, res, 500, 'internal error');
    }
    reply(res, 200, 'ok');
    try {
      options.onFinalized?.(key);
    } catch (error) {
      report(error);
    }
  };

  return async (req, res) => {
    try {
      const url = req.url ?? '';
      const query = url.indexOf('?');
      // The raw path is used as is: normalizing `..` or `%2e` here would hide keys the store must refuse.
      const path = query < 0 ? url : url.slice(0, query);
      if (!path.startsWith(PREFIX)) return reply(res, 404, 'not found');
      const method = req.method ?? '';
      if (method !== 'GET' && method !== 'PUT') return reply(res, 405, 'method not allowed', { allow: 'GET, PUT' });
      const key = path.slice(PREFIX.length);
      const verdict = signer.verify(method, key, new URLSearchParams(query < 0 ? '' : url.slice(query + 1)));
      if (!verdict.ok) return method === 'PUT' ? refuseBody(req, res, verdict.status, verdict.reason) : reply(res, verdict.status, verdict.reason);
      if (method === 'GET') return await serveGet(key, res);
      return await servePut(key, verdict.maxBytes, req, res);
    } catch (error) {
      report(error);
      reply(res, 500, 'internal error');
    }
  };
}

function reply(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  // Once a streamed body has started, the only honest way to signal failure is to cut the connection.
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/**
 * Answers a request whose body will not be stored. The rest of the body is read and dropped so the client can
 * finish sending and see the answer, and the connection is closed after it rather than reused.
 */
function refuseBody(req: IncomingMessage, res: ServerResponse, status: number, text: string): void {
  req.resume();
  reply(res, status, text, { connection: 'close' });
}
