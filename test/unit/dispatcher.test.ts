import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { InboundMessage, Outcome } from '../../shared/core/handlers/message-handler.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import type { MessageQueue } from '../../shared/ports/messages.ts';
import { createDispatcher } from '../../shared/runtimes/local/dispatcher.ts';
import { openTempSqliteQueue } from '../helpers/sqlite-queue.ts';
import { waitUntil } from '../helpers/wait.ts';

const options = { ackDeadlineMs: 60_000, maxAttempts: 3, minBackoffMs: 100, maxBackoffMs: 1_000 };

describe('the dispatcher', () => {
  it('after a short batch waits for a publish or a finished handler, rather than pulling what is not there', async () => {
    const { queue, cleanup } = await openTempSqliteQueue();
    // Each pull's size, as the dispatcher saw it.
    const pulls: number[] = [];
    const counting: MessageQueue = Object.assign(Object.create(queue) as MessageQueue, {
      async pull(name: string, max: number) {
        const deliveries = await queue.pull(name, max);
        pulls.push(deliveries.length);
        return deliveries;
      },
    });
    const started: string[] = [];
    let release = (): void => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    const handle = Object.assign(
      async (message: InboundMessage): Promise<Outcome> => {
        started.push(Buffer.from(message.data).toString());
        await released;
        return { action: 'ack' };
      },
      { abandon: async () => {} },
    );
    await queue.subscribe('t', 's', options);
    await queue.publish('t', Buffer.from('one'));
    await queue.publish('t', Buffer.from('two'));
    // No idle wake-up during the test: every pull has a publish or a finished handler behind it.
    const dispatcher = createDispatcher({
      queue: counting,
      routes: [{ topic: 't', subscription: 's', handle, concurrency: 4 }],
      logger: silentLogger,
      idlePollMs: 3_600_000,
    });
    try {
      await waitUntil(() => started.length === 2, 'both messages are being handled');
      // Give a pull made at once after the batch its chance to show.
      await nextTurn();
      assert.deepEqual(pulls, [2], 'two of four places taken: nothing more was due, so no second pull');
      await queue.publish('t', Buffer.from('three'));
      await waitUntil(() => started.length === 3, 'the published message is being handled');
      assert.deepEqual(started, ['one', 'two', 'three']);
      release();
      await waitUntil(async () => (await queue.backlog('s')).count === 0, 'every message is acknowledged');
    } finally {
      release();
      await dispatcher.stop();
      await cleanup();
    }
  });

  it('redelivers a message whose handler asked for a delay no sooner than asked, and dead-letters what it is told to', async () => {
    let clock = 1_700_000_000_000;
    const { queue, cleanup } = await openTempSqliteQueue({ now: () => clock });
    const seen: Array<{ text: string; attempt: number }> = [];
    const handle = Object.assign(
      async (message: InboundMessage): Promise<Outcome> => {
        const text = Buffer.from(message.data).toString();
        seen.push({ text, attempt: message.attempt });
        if (text === 'poison') return { action: 'dead-letter', reason: 'cannot be handled' };
        return message.attempt === 1 ? { action: 'retry', reason: 'rate limit spent', afterMs: 60_000 } : { action: 'ack' };
      },
      { abandon: async () => {} },
    );
    await queue.subscribe('t', 's', options);
    await queue.publish('t', Buffer.from('limited'));
    await queue.publish('t', Buffer.from('poison'));
    const dispatcher = createDispatcher({ queue, routes: [{ topic: 't', subscription: 's', handle, concurrency: 2 }], logger: silentLogger, idlePollMs: 5 });
    try {
      await waitUntil(async () => (await queue.list()).length === 1 && seen.length === 2, 'both handled once');
      assert.deepEqual((await queue.list()).map((letter) => [Buffer.from(letter.data).toString(), letter.reason]), [['poison', 'cannot be handled']]);
      assert.deepEqual(await queue.backlog('s'), { count: 1, nextDueAt: clock + 60_000 });
      // Far past the subscription's backoff (100 ms), short of the delay asked for: the dispatcher's idle pulls find nothing.
      clock += 59_999;
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(seen.length, 2, 'not redelivered before the delay');
      clock += 1;
      await waitUntil(async () => (await queue.backlog('s')).count === 0, 'redelivered once due, and acked');
      assert.deepEqual(seen.at(-1), { text: 'limited', attempt: 2 });
    } finally {
      await dispatcher.stop();
      await cleanup();
    }
  });
});
