import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RetryableError } from '../../shared/core/errors.ts';
import type { InboundMessage, MessageHandler, Outcome } from '../../shared/core/handlers/message-handler.ts';
import { deferral, messagePublishedEvent, pubsubFunction } from '../../shared/adapters/gcp/pubsub-function.ts';
import { createMemoryQueue } from '../fakes/memory-queue.ts';

const start = Date.parse('2026-12-01T00:00:00Z');

/** A handler that answers from a script and records the attempts it was called with. */
function scripted(answers: Outcome[]) {
  const calls: InboundMessage[] = [];
  const handler: MessageHandler = Object.assign(
    async (message: InboundMessage): Promise<Outcome> => {
      calls.push(message);
      return answers.shift() ?? { action: 'ack' };
    },
    { abandon: async () => {} },
  );
  return { handler, calls };
}

function eventOf(data: Uint8Array, attributes: Record<string, string>, deliveryAttempt: number, messageId = 'm-1') {
  return messagePublishedEvent({ project: 'p', topic: 'task-ready', subscription: 'launch', messageId, data, attributes, publishedAt: start, deliveryAttempt });
}

describe('a handler as a Pub/Sub function', () => {
  it('runs a handler that asked for a delay again no sooner than asked, and only then, counting its attempts', async () => {
    let clock = start;
    const queue = createMemoryQueue({ now: () => clock });
    await queue.subscribe('task-ready', 'copies', { ackDeadlineMs: 60_000, maxAttempts: 5, minBackoffMs: 1, maxBackoffMs: 1 });
    const { handler, calls } = scripted([{ action: 'retry', reason: 'rate limit spent', afterMs: 3_600_000 }]);
    const fn = pubsubFunction(handler, { topic: 'task-ready', deadLetters: queue, publisher: queue, maxDeliveryAttempts: 5, now: () => clock });
    const data = Buffer.from('{"v":1}');

    // The first delivery runs the handler, which is rate-limited for an hour: acked, with a deferred copy published.
    await fn(eventOf(data, { 'hermetic-topic': 'task-ready' }, 1));
    assert.equal(calls.length, 1);
    const [copy] = await queue.pull('copies', 10);
    assert.ok(copy);
    await queue.ack(copy);
    assert.deepEqual(copy.attributes, { 'hermetic-topic': 'task-ready', [deferral.notBefore]: String(start + 3_600_000), [deferral.attempts]: '1' });

    // Early deliveries of the copy run nothing: Pub/Sub is told to back off...
    clock += 600_000;
    await assert.rejects(fn(eventOf(copy.data, copy.attributes, 1, copy.messageId)), (error) => error instanceof RetryableError && /deferred until 2026-12-01T01:00:00/.test(error.message));
    // ...and before its attempts run out, a fresh copy takes over the wait, so it is never dead-lettered for waiting.
    await fn(eventOf(copy.data, copy.attributes, 4, copy.messageId));
    const [fresh] = await queue.pull('copies', 10);
    assert.ok(fresh);
    await queue.ack(fresh);
    assert.deepEqual(fresh.attributes, copy.attributes);
    assert.equal(calls.length, 1, 'no handler ran before the hour was up');

    // Once due, the handler runs, as its second attempt.
    clock = start + 3_600_000;
    await fn(eventOf(copy.data, copy.attributes, 1, 'm-3'));
    assert.equal(calls.length, 2);
    assert.equal(calls[1]?.attempt, 2);
    assert.deepEqual(await queue.pull('copies', 10), []);
  });

  it('leaves a retry without a delay to Pub/Sub\'s backoff, and records a dead letter with its attempts', async () => {
    const queue = createMemoryQueue();
    const { handler } = scripted([{ action: 'retry', reason: 'connection reset' }, { action: 'dead-letter', reason: 'no such task' }]);
    const fn = pubsubFunction(handler, { topic: 'task-ready', deadLetters: queue, publisher: queue, maxDeliveryAttempts: 5, now: Date.now });
    await assert.rejects(fn(eventOf(Buffer.from('{}'), {}, 1)), /connection reset/);
    await fn(eventOf(Buffer.from('{}'), {}, 2));
    const [letter] = await queue.list();
    assert.equal(letter?.reason, 'no such task');
    assert.equal(letter?.attempts, 2);
  });
});
