import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { PubsubFunction } from '../../functions/pubsub-function.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import type { MessageQueue } from '../../shared/ports/messages.ts';
import { createDispatcher } from '../../shared/runtime/dispatcher.ts';
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
      async (event: Parameters<PubsubFunction>[0]) => {
        started.push(Buffer.from(event.data?.message?.data ?? '', 'base64').toString());
        await released;
      },
      { abandon: async () => {} },
    );
    await queue.subscribe('t', 's', options);
    await queue.publish('t', Buffer.from('one'));
    await queue.publish('t', Buffer.from('two'));
    // No idle wake-up during the test: every pull has a publish or a finished handler behind it.
    const dispatcher = createDispatcher({
      queue: counting,
      routes: [{ topic: 't', subscription: 's', handle, concurrency: 4, maxAttempts: options.maxAttempts }],
      logger: silentLogger,
      project: 'test',
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
});
