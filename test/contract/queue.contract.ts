import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { Delivery, MessageQueue, SubscriptionOptions } from '../../shared/ports/messages.ts';

const START = 1_700_000_000_000;
const options: SubscriptionOptions = {
  ackDeadlineMs: 10_000,
  maxAttempts: 3,
  minBackoffMs: 1_000,
  maxBackoffMs: 5_000,
};
const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
const decode = (data: Uint8Array): string => new TextDecoder().decode(data);

/**
 * The MessageQueue contract: every adapter passes these unchanged. `make` gives a fresh, empty queue that reads
 * time from `now`, which the tests move by hand.
 */
export function queueContract(
  adapterName: string,
  make: (now: () => number) => Promise<{ queue: MessageQueue; cleanup(): Promise<void> }>,
): void {
  describe(`MessageQueue contract: ${adapterName}`, () => {
    let clock = START;
    let queue: MessageQueue;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      clock = START;
      ({ queue, cleanup } = await make(() => clock));
    });
    afterEach(async () => {
      await cleanup();
    });

    const pullOne = async (subscription: string): Promise<Delivery> => {
      const [delivery, ...rest] = await queue.pull(subscription, 10);
      assert.ok(delivery, `expected a delivery on ${subscription}`);
      assert.equal(rest.length, 0, `expected exactly one delivery on ${subscription}`);
      return delivery;
    };
    const texts = (deliveries: Delivery[]): string[] => deliveries.map((d) => decode(d.data));

    it('publishes, pulls and acks', async () => {
      await queue.subscribe('builds', 'plan', options);
      clock += 5;
      const id = await queue.publish('builds', encode('hello'), { kind: 'greeting' });
      assert.equal(typeof id, 'string');
      assert.notEqual(id, '');
      clock += 7;
      const delivery = await pullOne('plan');
      assert.equal(delivery.messageId, id);
      assert.equal(delivery.topic, 'builds');
      assert.equal(delivery.subscription, 'plan');
      assert.equal(decode(delivery.data), 'hello');
      assert.deepEqual(delivery.attributes, { kind: 'greeting' });
      assert.equal(delivery.attempt, 1);
      assert.equal(delivery.publishedAt, START + 5);
      assert.equal(typeof delivery.ackId, 'string');
      assert.deepEqual(await queue.pull('plan', 10), [], 'a leased message is not delivered again');
      await queue.ack(delivery);
      assert.deepEqual(await queue.backlog('plan'), { count: 0, nextDueAt: undefined });
      clock += options.ackDeadlineMs * 10;
      assert.deepEqual(await queue.pull('plan', 10), [], 'an acked message never comes back');
    });

    it('gives every message its own ID', async () => {
      await queue.subscribe('t', 's', options);
      const ids = await Promise.all(Array.from({ length: 100 }, (_, i) => queue.publish('t', encode(String(i)))));
      assert.equal(new Set(ids).size, 100);
    });

    it('fans a message out to every subscription of its topic, and only those', async () => {
      await queue.subscribe('t', 'one', options);
      await queue.subscribe('t', 'two', options);
      await queue.subscribe('other', 'three', options);
      const id = await queue.publish('t', encode('fan'));
      const one = await pullOne('one');
      const two = await pullOne('two');
      assert.equal(one.messageId, id);
      assert.equal(two.messageId, id);
      assert.notEqual(one.ackId, two.ackId);
      assert.deepEqual(await queue.pull('three', 10), []);
      await queue.ack(one);
      assert.equal((await queue.backlog('one')).count, 0);
      assert.equal((await queue.backlog('two')).count, 1, 'an ack on one subscription leaves the other alone');
    });

    it('drops a message published to a topic with no subscription', async () => {
      const id = await queue.publish('nobody-listens', encode('lost'));
      assert.equal(typeof id, 'string');
      assert.deepEqual(await queue.backlog(), { count: 0, nextDueAt: undefined });
    });

    it('gives a new subscription only messages published after it', async () => {
      await queue.subscribe('t', 'early', options);
      await queue.publish('t', encode('before'));
      await queue.subscribe('t', 'late', options);
      await queue.publish('t', encode('after'));
      assert.deepEqual(texts(await queue.pull('early', 10)), ['before', 'after']);
      assert.deepEqual(texts(await queue.pull('late', 10)), ['after']);
    });

    it('subscribes idempotently, and refuses to move a subscription to another topic', async () => {
      await queue.subscribe('t', 's', options);
      await queue.subscribe('t', 's', options);
      await queue.publish('t', encode('once'));
      assert.equal((await queue.pull('s', 10)).length, 1);
      await assert.rejects(queue.subscribe('elsewhere', 's', options), /already exists/);
      await assert.rejects(queue.subscribe('t', 'bad', { ...options, ackDeadlineMs: 0 }), /ackDeadlineMs/);
    });

    it('rejects a pull from an unknown subscription', async () => {
      await assert.rejects(queue.pull('nope', 1), /unknown subscription/);
    });

    it('round-trips arbitrary bytes and attributes, and copies the data', async () => {
      await queue.subscribe('t', 's', options);
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      const attributes = { 'content-type': 'application/octet-stream', note: 'ünïcødé ✓', empty: '' };
      await queue.publish('t', all, attributes);
      await queue.publish('t', new Uint8Array(0));
      all[0] = 42;
      const [binary, empty] = await queue.pull('s', 10);
      assert.deepEqual(binary?.data, Uint8Array.from({ length: 256 }, (_, i) => i));
      assert.deepEqual(binary?.attributes, attributes);
      assert.ok(empty?.data instanceof Uint8Array);
      assert.equal(empty.data.length, 0);
      assert.deepEqual(empty.attributes, {});
    });

    it('redelivers after the ack deadline with a new ack ID, and ignores the stale one', async () => {
      await queue.subscribe('t', 's', options);
      await queue.publish('t', encode('slow'));
      const first = await pullOne('s');
      clock += options.ackDeadlineMs - 1;
      assert.deepEqual(await queue.pull('s', 10), [], 'not before the deadline');
      clock += 1;
      const second = await pullOne('s');
      assert.equal(second.messageId, first.messageId);
      assert.equal(second.attempt, 2);
      assert.notEqual(second.ackId, first.ackId);
      await queue.ack(first);
      await queue.nack(first, 'stale');
      await queue.deadLetter(first, 'stale');
      assert.equal((await queue.backlog('s')).count, 1, 'stale ack, nack and dead-letter do nothing');
      assert.deepEqual(await queue.list(), []);
      assert.deepEqual(await queue.pull('s', 10), [], 'the current lease still holds');
      await queue.ack(second);
      assert.equal((await queue.backlog('s')).count, 0);
    });

    it('backs off after a nack: doubling, capped', async () => {
      await queue.subscribe('t', 's', { ...options, maxAttempts: 10 });
      await queue.publish('t', encode('flaky'));
      const expected = [1_000, 2_000, 4_000, 5_000, 5_000];
      let delivery = await pullOne('s');
      for (const [i, delay] of expected.entries()) {
        assert.equal(delivery.attempt, i + 1);
        await queue.nack(delivery, 'try again');
        assert.deepEqual(await queue.backlog('s'), { count: 1, nextDueAt: clock + delay });
        clock += delay - 1;
        assert.deepEqual(await queue.pull('s', 10), [], `not due before ${delay} ms`);
        clock += 1;
        delivery = await pullOne('s');
      }
      assert.equal(delivery.attempt, expected.length + 1);
      await queue.ack(delivery);
      await queue.nack(delivery, 'after ack');
      assert.equal((await queue.backlog('s')).count, 0);
    });

    it('delivers a message nacked with a delay no sooner than asked, and no sooner than its backoff', async () => {
      await queue.subscribe('t', 's', options);
      await queue.publish('t', encode('rate-limited'));
      let delivery = await pullOne('s');
      await queue.nack(delivery, 'rate limited', 60_000);
      assert.deepEqual(await queue.backlog('s'), { count: 1, nextDueAt: clock + 60_000 });
      clock += 59_999;
      assert.deepEqual(await queue.pull('s', 10), [], 'not due before the delay asked for');
      clock += 1;
      delivery = await pullOne('s');
      assert.equal(delivery.attempt, 2);
      // A delay shorter than the backoff (2 s at the second attempt) leaves the backoff in force.
      await queue.nack(delivery, 'rate limited', 10);
      assert.deepEqual(await queue.backlog('s'), { count: 1, nextDueAt: clock + 2_000 });
    });

    it('makes a nacked message stale: its ack ID no longer acks', async () => {
      await queue.subscribe('t', 's', options);
      await queue.publish('t', encode('m'));
      const delivery = await pullOne('s');
      await queue.nack(delivery, 'later');
      await queue.ack(delivery);
      assert.equal((await queue.backlog('s')).count, 1);
    });

    it('dead-letters a message nacked maxAttempts times, with the reason, and never delivers it again', async () => {
      await queue.subscribe('t', 's', options);
      const id = await queue.publish('t', encode('poison'), { a: 'b' });
      for (let attempt = 1; attempt <= options.maxAttempts; attempt++) {
        const delivery = await pullOne('s');
        assert.equal(delivery.attempt, attempt);
        await queue.nack(delivery, `handler failed ${attempt}`);
        clock += options.maxBackoffMs;
      }
      clock += options.ackDeadlineMs * 100;
      assert.deepEqual(await queue.pull('s', 10), []);
      assert.deepEqual(await queue.backlog('s'), { count: 0, nextDueAt: undefined });
      const [letter, ...rest] = await queue.list();
      assert.equal(rest.length, 0);
      assert.equal(letter?.id, id);
      assert.equal(letter.topic, 't');
      assert.equal(letter.subscription, 's');
      assert.equal(decode(letter.data), 'poison');
      assert.deepEqual(letter.attributes, { a: 'b' });
      assert.equal(letter.attempts, options.maxAttempts);
      assert.equal(letter.reason, `handler failed ${options.maxAttempts}`);
      assert.equal(typeof letter.at, 'number');
    });

    it('dead-letters at once on deadLetter', async () => {
      await queue.subscribe('t', 's', options);
      await queue.publish('t', encode('bad input'));
      const delivery = await pullOne('s');
      clock += 3;
      await queue.deadLetter(delivery, 'schema: missing field x');
      clock += options.ackDeadlineMs * 2;
      assert.deepEqual(await queue.pull('s', 10), []);
      const letters = await queue.list();
      assert.equal(letters.length, 1);
      assert.equal(letters[0]?.reason, 'schema: missing field x');
      assert.equal(letters[0]?.attempts, 1);
      assert.equal(letters[0]?.at, START + 3);
    });

    it('dead-letters a message whose last lease ran out, tells who listens, and fills the pull with the next one', async () => {
      await queue.subscribe('t', 's', options);
      const heard: Array<{ text: string; subscription: string; reason: string; attempts: number }> = [];
      queue.onExpired((letter) => heard.push({ text: decode(letter.data), subscription: letter.subscription, reason: letter.reason, attempts: letter.attempts }));
      const id = await queue.publish('t', encode('hangs'));
      for (let attempt = 1; attempt <= options.maxAttempts; attempt++) {
        assert.equal((await pullOne('s')).attempt, attempt);
        clock += options.ackDeadlineMs;
      }
      clock += 1;
      await queue.publish('t', encode('next'));
      assert.deepEqual(texts(await queue.pull('s', 1)), ['next']);
      const [letter] = await queue.list();
      assert.equal(letter?.id, id);
      assert.equal(letter.reason, `ack deadline exceeded ${options.maxAttempts} times`);
      assert.equal(letter.attempts, options.maxAttempts);
      assert.equal((await queue.backlog('s')).count, 1);
      assert.deepEqual(heard, [{ text: 'hangs', subscription: 's', reason: `ack deadline exceeded ${options.maxAttempts} times`, attempts: options.maxAttempts }]);
    });

    it('counts the backlog and tells when the next message is due', async () => {
      assert.deepEqual(await queue.backlog(), { count: 0, nextDueAt: undefined });
      await queue.subscribe('t', 'a', options);
      await queue.subscribe('t', 'b', options);
      await queue.publish('t', encode('1'));
      clock += 100;
      await queue.publish('t', encode('2'));
      assert.deepEqual(await queue.backlog('a'), { count: 2, nextDueAt: START });
      assert.deepEqual(await queue.backlog(), { count: 4, nextDueAt: START });
      const pulledA = await queue.pull('a', 1);
      assert.deepEqual(await queue.backlog('a'), { count: 2, nextDueAt: START + 100 });
      await queue.ack(pulledA[0] as Delivery);
      const [second] = await queue.pull('a', 1);
      assert.deepEqual(await queue.backlog('a'), { count: 1, nextDueAt: START + 100 + options.ackDeadlineMs });
      await queue.nack(second as Delivery, 'later');
      assert.deepEqual(await queue.backlog('a'), { count: 1, nextDueAt: START + 100 + options.minBackoffMs });
      assert.deepEqual(await queue.backlog('b'), { count: 2, nextDueAt: START });
      assert.deepEqual(await queue.backlog('no-such-subscription'), { count: 0, nextDueAt: undefined });
    });

    it('calls onPublish listeners after a publish, until unsubscribed', async () => {
      await queue.subscribe('t', 's', options);
      const seen: string[] = [];
      const stop = queue.onPublish((topic) => seen.push(topic));
      const backlogs: Promise<{ count: number }>[] = [];
      const stopCheck = queue.onPublish(() => backlogs.push(queue.backlog('s')));
      await queue.publish('t', encode('1'));
      await queue.publish('u', encode('2'));
      assert.deepEqual(seen, ['t', 'u']);
      assert.equal((await backlogs[0])?.count, 1, 'the message is stored when the listener runs');
      stop();
      stopCheck();
      await queue.publish('t', encode('3'));
      assert.deepEqual(seen, ['t', 'u']);
    });

    it('pulls at most max messages', async () => {
      await queue.subscribe('t', 's', options);
      for (let i = 0; i < 5; i++) await queue.publish('t', encode(String(i)));
      assert.deepEqual(await queue.pull('s', 0), []);
      assert.deepEqual(texts(await queue.pull('s', 2)), ['0', '1']);
      assert.deepEqual(texts(await queue.pull('s', 10)), ['2', '3', '4']);
      assert.deepEqual(await queue.pull('s', 10), []);
    });

    it('delivers many messages in publish order the first time', async () => {
      await queue.subscribe('t', 's', options);
      const count = 250;
      for (let i = 0; i < count; i++) {
        if (i % 3 === 0) clock += 1;
        await queue.publish('t', encode(String(i)));
      }
      const seen: string[] = [];
      for (;;) {
        const batch = await queue.pull('s', 7);
        if (batch.length === 0) break;
        assert.ok(batch.length <= 7);
        seen.push(...texts(batch));
        for (const delivery of batch) assert.equal(delivery.attempt, 1);
      }
      assert.deepEqual(
        seen,
        Array.from({ length: count }, (_, i) => String(i)),
      );
    });

    it('fills a large pull in order, past messages that used up their attempts', async () => {
      await queue.subscribe('t', 's', options);
      for (let i = 0; i < 3; i++) await queue.publish('t', encode(`hangs ${i}`));
      for (let attempt = 1; attempt <= options.maxAttempts; attempt++) {
        assert.equal((await queue.pull('s', 10)).length, 3);
        clock += options.ackDeadlineMs;
      }
      const count = 250;
      for (let i = 0; i < count; i++) await queue.publish('t', encode(String(i)));
      assert.deepEqual(
        texts(await queue.pull('s', count)),
        Array.from({ length: count }, (_, i) => String(i)),
      );
      assert.equal((await queue.list()).length, 3);
    });

    it('orders a pull by due time, then publish order', async () => {
      await queue.subscribe('t', 's', options);
      await queue.publish('t', encode('first'));
      const first = await pullOne('s');
      await queue.nack(first, 'retry'); // due at START + 1000
      clock += 500;
      await queue.publish('t', encode('second')); // due at START + 500
      await queue.publish('t', encode('third')); // due at START + 500
      clock += 1_000;
      assert.deepEqual(texts(await queue.pull('s', 10)), ['second', 'third', 'first']);
    });

    it('rejects calls after close', async () => {
      await queue.subscribe('t', 's', options);
      await queue.close();
      await assert.rejects(queue.publish('t', encode('x')), /closed/);
      await assert.rejects(queue.pull('s', 1), /closed/);
      await assert.rejects(queue.backlog(), /closed/);
    });
  });
}
