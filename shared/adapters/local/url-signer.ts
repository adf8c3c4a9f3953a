import { createHmac, createSecretKey, timingSafeEqual } from 'node:crypto';
import { assertBlobKey, assertSignOptions, type SignOptions } from '../../ports/blobs.ts';

/** The outcome of checking a signed request: allowed (with the signed size limit) or refused with a short reason. */
export type VerifyResult = { ok: true; maxBytes: number | undefined } | { ok: false; status: 403; reason: string };

/** Issues and checks HMAC-signed blob URLs, each good for one method on one key until it expires. */
export interface UrlSigner {
  sign(key: string, options: SignOptions): string;
  verify(method: string, key: string, params: URLSearchParams): VerifyResult;
}

export interface UrlSignerOptions {
  /** Where the blob server listens, e.g. `http://127.0.0.1:8080`; URLs are `${baseUrl}/blobs/${key}?...`. */
  baseUrl: string;
  /** At least 16 bytes; whoever holds it can mint URLs for any object. */
  secret: Uint8Array;
  /** ms since the epoch; injectable so tests can expire URLs without waiting. */
  now?: () => number;
}

const MIN_SECRET_BYTES = 16;
const PARAM_NAMES = ['m', 'e', 'x', 's'] as const;

/** Creates a signer; throws on a short secret, and `sign` throws on an invalid key or option. */
export function createUrlSigner(options: UrlSignerOptions): UrlSigner {
  if (options.secret.byteLength < MIN_SECRET_BYTES) {
    throw new Error(`url signer secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
  // Imported once: a raw secret would be imported again by every HMAC, and a launch signs about 18 URLs.
  const secret = createSecretKey(Buffer.from(options.secret));
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const now = options.now ?? Date.now;

  // JSON of a fixed-shape array is unambiguous: no choice of key can make two different tuples encode alike.
  const mac = (method: string, key: string, expiresAt: number, maxBytes: number | undefined): Buffer =>
    createHmac('sha256', secret)
      .update(`hermetic-blob-url-v1\n${JSON.stringify([method, key, expiresAt, maxBytes ?? null])}`)
      .digest();

  return {
    sign(key, sign) {
      assertBlobKey(key);
      assertSignOptions(sign);
      const signature = mac(sign.method, key, sign.expiresAt, sign.maxBytes).toString('hex');
      // Valid keys hold only URL-safe characters, so the key goes into the path as is; so do the parameters (a
      // method name, whole numbers, hex), in the order URLSearchParams would write them.
      const max = sign.maxBytes === undefined ? '' : `&x=${sign.maxBytes}`;
      return `${baseUrl}/blobs/${key}?m=${sign.method}&e=${sign.expiresAt}${max}&s=${signature}`;
    },

    verify(method, key, params) {
      const refuse = (reason: string): VerifyResult => ({ ok: false, status: 403, reason });
      try {
        assertBlobKey(key);
      } catch {
        return refuse('invalid key');
      }
      // A repeated parameter could mean different things to different readers; allow exactly one of each.
      for (const name of new Set(params.keys())) {
        if (!(PARAM_NAMES as readonly string[]).includes(name) || params.getAll(name).length !== 1) {
          return refuse('malformed signature');
        }
      }
      const signedMethod = params.get('m');
      const expires = params.get('e');
      const max = params.get('x');
      const signature = params.get('s');
      if (
        (signedMethod !== 'GET' && signedMethod !== 'PUT') ||
        expires === null ||
        !/^\d{1,16}$/.test(expires) ||
        (max !== null && !/^\d{1,16}$/.test(max)) ||
        signature === null ||
        !/^[0-9a-f]{64}$/.test(signature)
      ) {
        return refuse('malformed signature');
      }
      const expiresAt = Number(expires);
      const maxBytes = max === null ? undefined : Number(max);
      if (!Number.isSafeInteger(expiresAt) || (maxBytes !== undefined && !Number.isSafeInteger(maxBytes))) {
        return refuse('malformed signature');
      }
      const expected = mac(signedMethod, key, expiresAt, maxBytes);
      if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) return refuse('bad signature');
      if (now() >= expiresAt) return refuse('expired');
      if (method !== signedMethod) return refuse('wrong method');
      return { ok: true, maxBytes };
    },
  };
}
