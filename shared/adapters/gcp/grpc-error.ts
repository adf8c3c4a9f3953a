import { PermanentError, RetryableError, describeError } from '../../core/errors.ts';

/**
 * How the Google adapters turn a client library's failure into the two kinds the entry points understand. The
 * libraries report gRPC status codes as a numeric `code`; the ones that cannot get better by waiting are permanent.
 * Everything else with a code (contention, unavailable, quota, a missing index still being built, a permission not
 * yet propagated) is retryable: the platform's bounded redelivery decides when to give up. So is a Node system
 * error (a string `code` such as ECONNRESET, from a REST transport). An error with no code at all came from the
 * library's own argument checks, so it is permanent.
 */

/** gRPC status codes the adapters name. */
export const grpcStatus = {
  invalidArgument: 3,
  notFound: 5,
  alreadyExists: 6,
  outOfRange: 11,
  unimplemented: 12,
} as const;

const permanentCodes: readonly number[] = [
  grpcStatus.invalidArgument,
  grpcStatus.alreadyExists,
  grpcStatus.outOfRange,
  grpcStatus.unimplemented,
];

/** The numeric gRPC status code of a client library error, or undefined. */
export function grpcCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** A PermanentError or RetryableError saying `what` failed and why, with the library's error as `cause`. */
export function fromGrpcError(what: string, error: unknown): PermanentError | RetryableError {
  if (error instanceof PermanentError || error instanceof RetryableError) return error;
  const code = grpcCode(error);
  const message = `${what}: ${describeError(error)}`;
  const systemError = typeof (error as { code?: unknown } | null)?.code === 'string';
  if (!systemError && (code === undefined || permanentCodes.includes(code))) {
    return new PermanentError(message, { cause: error });
  }
  return new RetryableError(message, { cause: error });
}
