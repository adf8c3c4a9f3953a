/**
 * The two failure kinds every entry point understands. A permanent error is acknowledged and recorded with its
 * reason (dead letter); a retryable one is redelivered with backoff. Anything else is treated as retryable a
 * bounded number of times.
 */

/** A failure that will fail again on redelivery: bad input, an impossible state. Never retried. */
export class PermanentError extends Error {
  override name = 'PermanentError';
}

/**
 * A failure worth trying again later: a network blip, a busy resource. With `retryAfterMs` (a rate limit's reset),
 * both runtimes deliver the message again no sooner than that.
 */
export class RetryableError extends Error {
  override name = 'RetryableError';
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/** The delay a RetryableError in `thrown` or under it (as a `cause`) asks for, if any. */
export function retryAfterOf(thrown: unknown): number | undefined {
  for (const error of causeChain(thrown)) {
    if (error instanceof RetryableError && error.retryAfterMs !== undefined) return error.retryAfterMs;
  }
  return undefined;
}

/** A config file that fails validation; the message names the file, the field and what was expected. */
export class ConfigError extends PermanentError {
  override name = 'ConfigError';
}

/** Turns anything thrown into an Error, keeping the original as `cause`. */
export function ensureError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === 'string' ? thrown : `non-error thrown: ${safeString(thrown)}`, {
    cause: thrown,
  });
}

/** The message of an error and of each `cause` under it, joined: "a: b: c". */
export function describeError(thrown: unknown): string {
  const parts: string[] = [];
  for (const error of causeChain(thrown)) if (!parts.includes(error.message)) parts.push(error.message);
  return parts.join(': ');
}

/** `thrown` and each `cause` under it, as Errors, five at most. */
function* causeChain(thrown: unknown): Generator<Error> {
  let current: unknown = thrown;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    const error = ensureError(current);
    yield error;
    current = error.cause;
  }
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
