import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromGrpcError, grpcCode } from '../../shared/adapters/gcp/grpc-error.ts';
import { PermanentError, RetryableError } from '../../shared/core/errors.ts';

const withCode = (code: unknown, message = 'boom'): Error => Object.assign(new Error(message), { code });

describe('fromGrpcError', () => {
  it('makes the codes that waiting cannot fix permanent, keeping the cause and saying what failed', () => {
    for (const code of [3, 6, 11, 12]) {
      const cause = withCode(code, `${code} BAD`);
      const error = fromGrpcError('publish to t', cause);
      assert.ok(error instanceof PermanentError, `code ${code}`);
      assert.equal(error.cause, cause);
      assert.match(error.message, new RegExp(`^publish to t: ${code} BAD`));
    }
  });

  it('makes contention, unavailability, quota and every other code retryable', () => {
    for (const code of [1, 2, 4, 5, 7, 8, 9, 10, 13, 14, 16]) {
      assert.ok(fromGrpcError('x', withCode(code)) instanceof RetryableError, `code ${code}`);
    }
    assert.ok(fromGrpcError('x', withCode('ECONNRESET')) instanceof RetryableError, 'a Node system error');
  });

  it("makes a library's own argument errors permanent, and passes the pipeline's own kinds through", () => {
    assert.ok(fromGrpcError('x', new TypeError('bad argument')) instanceof PermanentError);
    assert.ok(fromGrpcError('x', 'a string') instanceof PermanentError);
    const retryable = new RetryableError('later');
    assert.equal(fromGrpcError('x', retryable), retryable);
  });

  it('reads only numeric codes', () => {
    assert.equal(grpcCode(withCode(10)), 10);
    assert.equal(grpcCode(withCode('10')), undefined);
    assert.equal(grpcCode(undefined), undefined);
  });
});
