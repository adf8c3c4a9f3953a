import { describeFailure, retryableStatus, retryUpload, uploadTimeoutMs, type FailedAttempt, type PutOptions } from './upload-retry.ts';

/**
 * A Cloud Storage resumable upload started from a V4 signed URL: a signed POST with `x-goog-resumable: start` opens
 * a session, and the session URI (its own credential) takes the body. When a request fails partway, the session is
 * asked how much it holds (`Content-Range: bytes *\/SIZE`, answered 308 with `Range`) and only the rest is sent, so a
 * network blip late in a snapshot of hundreds of MB does not start it over.
 */

/**
 * Uploads `body` through a session opened at `startUrl` with `headers` (the signed ones, `x-goog-resumable` among
 * them). Throws an Error naming `options.what` when the server refused, or every attempt failed; a session that
 * vanished is started afresh within the same attempt budget.
 */
export async function putResumable(
  startUrl: string,
  headers: Record<string, string>,
  body: Blob,
  options: PutOptions,
): Promise<void> {
  const size = body.size;
  const contentType = options.contentType ?? 'application/octet-stream';
  const timeout = (bytes: number): AbortSignal => AbortSignal.timeout(uploadTimeoutMs(bytes, options));
  const fail = (message: string, retryable: boolean, cause?: unknown): FailedAttempt => ({
    error: new Error(`${options.what}: ${message}`, cause === undefined ? undefined : { cause }),
    retryable,
  });
  const byStatus = (what: string, status: number): FailedAttempt =>
    fail(`${what}: HTTP ${status}`, retryableStatus(status));

  let session: string | undefined;
  /** Bytes the session is known to hold; undefined when it must be asked. */
  let held: number | undefined = 0;
  return retryUpload(options, async (): Promise<FailedAttempt | undefined> => {
    try {
      if (session === undefined) {
        const started = await fetch(startUrl, {
          method: 'POST',
          headers: { ...headers, 'content-type': contentType },
          signal: timeout(0),
        });
        await started.arrayBuffer().catch(() => undefined);
        const location = started.headers.get('location');
        if (started.status !== 200 && started.status !== 201) return byStatus('cannot start the upload', started.status);
        if (location === null) return fail('cannot start the upload: no session in the answer', true);
        session = location;
        held = 0;
      }
      if (held === undefined) {
        const status = await fetch(session, {
          method: 'PUT',
          headers: { 'content-range': `bytes */${size}` },
          // A 308 here means "resume incomplete", not a redirect.
          redirect: 'manual',
          signal: timeout(0),
        });
        await status.arrayBuffer().catch(() => undefined);
        if (status.status === 200 || status.status === 201) return undefined;
        if (status.status === 404 || status.status === 410) {
          session = undefined;
          return fail(`the upload session is gone (HTTP ${status.status})`, true);
        }
        if (status.status !== 308) return byStatus('cannot resume the upload', status.status);
        held = heldBytes(status.headers.get('range'));
      }
      const from = held;
      const response = await fetch(session, {
        method: 'PUT',
        headers: from === 0 ? {} : { 'content-range': `bytes ${from}-${size - 1}/${size}` },
        body: from === 0 ? body : body.slice(from),
        redirect: 'manual',
        signal: timeout(size - from),
      });
      await response.arrayBuffer().catch(() => undefined);
      if (response.status === 200 || response.status === 201) return undefined;
      held = undefined;
      if (response.status === 404 || response.status === 410) {
        session = undefined;
        return fail(`the upload session is gone (HTTP ${response.status})`, true);
      }
      return byStatus('upload failed', response.status);
    } catch (error) {
      // Whatever part of the body arrived is in the session; ask before sending more.
      held = undefined;
      return fail(describeFailure(error), true, error);
    }
  });
}

/** The bytes a session holds, from a 308's `Range: bytes=0-N` (none when absent). */
function heldBytes(range: string | null): number {
  const match = range === null ? null : /^bytes=0-(\d+)$/.exec(range);
  return match === null ? 0 : Number(match[1]) + 1;
}
