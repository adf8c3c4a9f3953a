import { signedRequest } from '../core/model/signed-url.ts';
import { putResumable } from './resumable-put.ts';
import { describeFailure, retryableStatus, retryUpload, uploadTimeoutMs, type PutOptions } from './upload-retry.ts';

/**
 * PUTs `body` to `url`, retrying network failures, timeouts, 408, 429 and 5xx with exponential backoff; a Blob (say,
 * from `fs.openAsBlob`) is streamed and read afresh on each attempt. Sends the headers the URL's fragment names (see
 * shared/core/model/signed-url.ts); a URL that asks for `x-goog-resumable: start` gets a resumable upload instead, which
 * resumes where a failed attempt stopped. Throws an Error naming `what` and the last failure when every attempt
 * failed or the server refused (any other 4xx).
 */
export async function putWithRetry(signedUrl: string, body: Uint8Array | string | Blob, options: PutOptions): Promise<void> {
  const { url, headers: signedHeaders } = signedRequest(signedUrl);
  if (signedHeaders['x-goog-resumable'] === 'start') {
    const blob = body instanceof Blob ? body : new Blob([typeof body === 'string' ? body : new Uint8Array(body)]);
    return putResumable(url, signedHeaders, blob, options);
  }
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body instanceof Blob ? body.size : body.byteLength;
  const timeoutMs = uploadTimeoutMs(size, options);
  return retryUpload(options, async () => {
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
      return { error: new Error(`${options.what}: ${describeFailure(error)}`, { cause: error }), retryable: true };
    }
    // Drain the body so the connection can be reused.
    await response.arrayBuffer().catch(() => undefined);
    if (response.ok) return undefined;
    return { error: new Error(`${options.what}: HTTP ${response.status}`), retryable: retryableStatus(response.status) };
  });
}
