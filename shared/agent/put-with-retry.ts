import { signedRequest } from '../model/signed-url.ts';
import { putResumable } from './resumable-put.ts';

/** Options for one PUT with retries. */
export interface PutOptions {
  /** Names the object in error messages; the URL is never quoted, since a signed URL is a credential. */
  what: string;
  contentType?: string;
  attempts?: number;
  baseDelayMs?: number;
  /** Per attempt; default 30 s plus 1 s per MiB of body. */
  timeoutMs?: number;
}

/**
 * PUTs `body` to `url`, retrying network failures, timeouts, 408, 429 and 5xx with exponential backoff; a Blob (say,
 * from `fs.openAsBlob`) is streamed and read afresh on each attempt. Sends the headers the URL's fragment names (see
 * shared/model/signed-url.ts); a URL that asks for `x-goog-resumable: start` gets a resumable upload instead, which
 * resumes where a failed attempt stopped. Throws an Error naming `what` and the last failure when every attempt
 * failed or the server refused (any other 4xx).
 */
export async function putWithRetry(signedUrl: string, body: Uint8Array | string | Blob, options: PutOptions): Promise<void> {
  const { url, headers: signedHeaders } = signedRequest(signedUrl);
  if (signedHeaders['x-goog-resumable'] === 'start') {
    const blob = body instanceof Blob ? body : new Blob([typeof body === 'string' ? body : new Uint8Array(body)]);
    return putResumable(url, signedHeaders, blob, { ...options, sleep, describe: describeFailure });
  }
  const attempts = options.attempts ?? 4;
  const baseDelayMs = options.baseDelayMs ?? 250;
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body instanceof Blob ? body.size : body.byteLength;
  // A snapshot of a few hundred MiB must not be cut off by a timeout sized for log chunks.
  const timeoutMs = options.timeoutMs ?? 30_000 + 1000 * Math.floor(size / (1 << 20));
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'PUT',
        // A copy over a plain ArrayBuffer, as fetch's body type asks; log chunks are small.
        body: typeof body === 'string' || body instanceof Blob ? body : new Uint8Array(body),
        headers: { ...signedHeaders, 'content-type': options.contentType ?? 'application/octet-stream' },
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      lastError = new Error(`${options.what}: ${describeFailure(error)}`, { cause: error });
      if (attempt < attempts) await sleep(baseDelayMs * 2 ** (attempt - 1));
      continue;
    }
    // Drain the body so the connection can be reused.
    await response.arrayBuffer().catch(() => undefined);
    if (response.ok) return;
    lastError = new Error(`${options.what}: HTTP ${response.status}`);
    const retryable = response.status === 408 || response.status === 429 || response.status >= 500;
    if (!retryable) throw lastError;
    if (attempt < attempts) await sleep(baseDelayMs * 2 ** (attempt - 1));
  }
  throw lastError ?? new Error(`${options.what}: not attempted`);
}

/** The message and each new message down its `cause` chain: "fetch failed: connect ECONNREFUSED ...". */
export function describeFailure(error: unknown): string {
  let text = error instanceof Error ? error.message : String(error);
  let cause = error instanceof Error ? error.cause : undefined;
  for (let depth = 0; cause instanceof Error && depth < 5; depth++) {
    if (!text.includes(cause.message)) text += `: ${cause.message}`;
    cause = cause.cause;
  }
  return text;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
