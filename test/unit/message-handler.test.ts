import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { PermanentError, RetryableError } from '../../shared/core/errors.ts';
import { messageHandler, type InboundMessage } from '../../shared/core/handlers/message-handler.ts';
import { silentLogger } from '../../shared/ports/log.ts';

const Greeting = z.object({ v: z.literal(1), name: z.string() });

/** A plain message, as any runtime hands one over. */
function message(data: unknown, attempt = 1): InboundMessage {
  return { messageId: 'm-1', topic: 'greetings', subscription: 'greet', data: Buffer.from(JSON.stringify(data)), attributes: {}, attempt };
}

function handlerThat(fails: () => never | void) {
  const gaveUp: string[] = [];
  const handler = messageHandler({
    topic: 'greetings',
    schema: Greeting,
    handle: async () => fails(),
    giveUp: async (greeting, reason) => {
      gaveUp.push(`${greeting.name}: ${reason}`);
    },
    maxAttempts: 3,
    logger: silentLogger,
  });
  return { handler, gaveUp };
}

describe('a message handler on a plain message', () => {
  it('acks a message it handled', async () => {
    const { handler } = handlerThat(() => {});
    assert.deepEqual(await handler(message({ v: 1, name: 'gopher' })), { action: 'ack' });
  });

  it('asks for a retry, no sooner than a rate limit says, until its last attempt', async () => {
    const { handler, gaveUp } = handlerThat(() => {
      throw new RetryableError('rate limit spent', { retryAfterMs: 42_000 });
    });
    assert.deepEqual(await handler(message({ v: 1, name: 'gopher' }, 1)), { action: 'retry', reason: 'rate limit spent', afterMs: 42_000 });
    assert.deepEqual(await handler(message({ v: 1, name: 'gopher' }, 3)), { action: 'dead-letter', reason: 'failed 3 times; last: rate limit spent' });
    assert.deepEqual(gaveUp, ['gopher: failed 3 times; last: rate limit spent']);
  });

  it('finds a rate limit\'s delay under the error a handler wrapped it in', async () => {
    const { handler } = handlerThat(() => {
      throw new Error('reporting build b-1', { cause: new RetryableError('rate limit spent', { retryAfterMs: 5_000 }) });
    });
    assert.deepEqual(await handler(message({ v: 1, name: 'gopher' })), { action: 'retry', reason: 'reporting build b-1: rate limit spent', afterMs: 5_000 });
  });

  it('retries any other failure with the runtime\'s own backoff', async () => {
    const { handler } = handlerThat(() => {
      throw new Error('connection reset');
    });
    assert.deepEqual(await handler(message({ v: 1, name: 'gopher' })), { action: 'retry', reason: 'connection reset' });
  });

  it('dead-letters a permanent failure and a malformed message at once, giving up on nothing it cannot name', async () => {
    const { handler, gaveUp } = handlerThat(() => {
      throw new PermanentError('no such build');
    });
    assert.deepEqual(await handler(message({ v: 1, name: 'gopher' })), { action: 'dead-letter', reason: 'no such build' });
    const malformed = await handler(message({ v: 2 }));
    assert.equal(malformed.action, 'dead-letter');
    assert.match(malformed.action === 'dead-letter' ? malformed.reason : '', /greetings message/);
    assert.deepEqual(gaveUp, []);
  });

  it('abandons a message it can decode through giveUp, and ignores one it cannot', async () => {
    const { handler, gaveUp } = handlerThat(() => {});
    await handler.abandon(Buffer.from(JSON.stringify({ v: 1, name: 'gopher' })), 'Pub/Sub gave up');
    await handler.abandon(Buffer.from('not json'), 'Pub/Sub gave up');
    assert.deepEqual(gaveUp, ['gopher: Pub/Sub gave up']);
  });
});
