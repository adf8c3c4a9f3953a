/** What the agent's two uploaders (a plain PUT, a resumable session) share: their options and their retries. */

/** Options for one upload with retries. */
export interface PutOptions {
  /** Names the object in error messages; the URL is never quoted, since a signed URL is a credential. */
  what: string;
  contentType?: string;
  attempts?: number;
  baseDelayMs?: number;
  /** Per attempt; default 30 s plus 1 s per MiB of body. */
  timeoutMs?: number;
}

/** Whether an HTTP status may pass on another try: a timeout, a rate limit, a server error. */
export function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** One request's time limit for `bytes` of body: a snapshot of a few hundred MiB must not be cut off like a log chunk. */
export function uploadTimeoutMs(bytes: number, options: PutOptions): number {
  return options.timeoutMs ?? 30_000 + 1000 * Math.floor(bytes / (1 << 20));
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

/** A failed attempt, and whether trying again may help. */
export interface FailedAttempt {
  error: Error;
  retryable: boolean;
}

/**
 * Runs `attempt` up to `options.attempts` times (4), waiting `options.baseDelayMs` (250 ms), doubled each time,
 * before each retry. Resolves when an attempt succeeds (answers undefined); throws the first failure that is not
 * retryable, or the last one.
 */
export async function retryUpload(options: PutOptions, attempt: () => Promise<FailedAttempt | undefined>): Promise<void> {
  const attempts = options.attempts ?? 4;
  const baseDelayMs = options.baseDelayMs ?? 250;
  let last: FailedAttempt | undefined;
  for (let n = 1; n <= attempts; n++) {
    if (n > 1) await new Promise((resolve) => setTimeout(resolve, baseDelayMs * 2 ** (n - 2)));
    last = await attempt();
    if (last === undefined) return;
    if (!last.retryable) throw last.error;
  }
  throw last?.error ?? new Error(`${options.what}: not attempted`);
}
