import { createHmac, timingSafeEqual } from 'node:crypto';

/** GitHub's `X-Hub-Signature-256`: `sha256=` and the body's HMAC-SHA256 under the webhook secret, in hex. */
const signatureHeader = /^sha256=([0-9a-f]{64})$/i;

/** The digest an `X-Hub-Signature-256` value carries, or undefined when the value is not of that form. */
export function parseSignature(header: string): Buffer | undefined {
  const hex = signatureHeader.exec(header)?.[1];
  return hex === undefined ? undefined : Buffer.from(hex, 'hex');
}

/** A body read whole, with its HMAC-SHA256 under the secret, hashed chunk by chunk as it arrived. */
export interface SignedBody {
  bytes: Buffer;
  digest: Buffer;
}

/**
 * Reads `body` to its end, hashing it as it goes. Resolves undefined as soon as it passes `maxBytes`, leaving the rest
 * unread; rejects if the body cannot be read (the client went away).
 */
export async function readSignedBody(
  body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  secret: string,
  maxBytes: number,
): Promise<SignedBody | undefined> {
  const hmac = createHmac('sha256', secret);
  const chunks: Uint8Array[] = [];
  let size = 0;
  // Not `for await`: leaving it early would close the iterator, which destroys a request and with it the socket the
  // refusal has to go out on.
  const iterator = Symbol.asyncIterator in body ? body[Symbol.asyncIterator]() : body[Symbol.iterator]();
  for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) {
    size += next.value.byteLength;
    if (size > maxBytes) return undefined;
    hmac.update(next.value);
    chunks.push(next.value);
  }
  return { bytes: Buffer.concat(chunks), digest: hmac.digest() };
}

/** Whether `body` was signed with the digest `expected`, compared in constant time. */
export function signedWith(body: SignedBody, expected: Buffer): boolean {
  return expected.length === body.digest.length && timingSafeEqual(expected, body.digest);
}
