import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { PubSub, type Message, type Subscription } from '@google-cloud/pubsub';
import { createPubsubPublisher } from '../../shared/adapters/gcp/pubsub-publisher.ts';
import { PermanentError } from '../../shared/core/errors.ts';
import { emulatorHost, emulatorMissing } from '../helpers/emulators.ts';
import { openTempSqliteQueue } from '../helpers/sqlite-queue.ts';
import { publisherContract, type Received } from './publisher.contract.ts';

const RECEIVE_TIMEOUT_MS = 10_000;
const PUSH_TIMEOUT_MS = 30_000;
const encode = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Polls `collect` until it has `count` items or the time is up, then waits `settleMs` more. */
async function gather<T>(
  collect: () => Promise<T[]>,
  count: number,
  settleMs: number,
  timeoutMs = RECEIVE_TIMEOUT_MS,
): Promise<T[]> {
  const got: T[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < count && Date.now() < deadline) {
    got.push(...(await collect()));
    if (got.length < count) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  if (settleMs > 0) {
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    got.push(...(await collect()));
  }
  return got;
}

publisherContract('sqlite queue', async () => {
  const { queue, cleanup } = await openTempSqliteQueue();
  const options = { ackDeadlineMs: 60_000, maxAttempts: 5, minBackoffMs: 1_000, maxBackoffMs: 10_000 };
  return {
    publisher: queue,
    subscribe: (topic, subscription) => queue.subscribe(topic, subscription, options),
    receive: (subscription, count, settleMs = 0) =>
      gather(
        async () => {
          const deliveries = await queue.pull(subscription, 100);
          for (const delivery of deliveries) await queue.ack(delivery);
          return deliveries.map(({ messageId, data, attributes }) => ({ messageId, data, attributes }));
        },
        count,
        settleMs,
      ),
    cleanup,
  };
});

const missing = emulatorMissing('pubsub');

/** A client of the emulator on a project of its own, so names never collide with another test's. */
async function emulatorClient(): Promise<PubSub> {
  const apiEndpoint = await emulatorHost('pubsub');
  // apiEndpoint and emulatorMode reach the emulator without PUBSUB_EMULATOR_HOST, which would leak to other tests.
  return new PubSub({ projectId: `hermetic-${randomUUID().slice(0, 8)}`, apiEndpoint, emulatorMode: true });
}

/** Streaming pulls on the emulator's subscriptions, each message acked and kept until asked for. */
function listeners(pubsub: PubSub) {
  const inbox = new Map<string, Received[]>();
  const open: Subscription[] = [];
  return {
    async subscribe(topic: string, subscription: string): Promise<void> {
      const [exists] = await pubsub.topic(topic).exists();
      if (!exists) await pubsub.createTopic(topic);
      const [sub] = await pubsub.topic(topic).createSubscription(subscription);
      inbox.set(subscription, []);
      sub.on('message', (message: Message) => {
        inbox.get(subscription)?.push({
          messageId: message.id,
          data: new Uint8Array(message.data),
          attributes: { ...message.attributes },
        });
        message.ack();
      });
      sub.on('error', (error) => assert.fail(`subscription ${subscription}: ${String(error)}`));
      open.push(sub);
    },
    receive(subscription: string, count: number, settleMs = 0): Promise<Received[]> {
      return gather(async () => inbox.get(subscription)?.splice(0) ?? [], count, settleMs);
    },
    async close(): Promise<void> {
      await Promise.all(open.map((sub) => sub.close()));
      await pubsub.close();
    },
  };
}

if (missing) {
  describe('Publisher contract: pubsub', () => {
    it('runs against the Pub/Sub emulator', { skip: missing }, () => {});
  });
} else {
  publisherContract('pubsub', async () => {
    const pubsub = await emulatorClient();
    const subs = listeners(pubsub);
    return {
      publisher: createPubsubPublisher({ pubsub }),
      subscribe: subs.subscribe,
      receive: subs.receive,
      cleanup: subs.close,
    };
  });
}

// The two dead-letter tests wait seconds on Pub/Sub's backoff, each on its own project: they run side by side.
describe('pubsub publisher, beyond the contract', { skip: missing, concurrency: true }, () => {
  it('fails a publish to a topic that does not exist with a PermanentError naming it', async () => {
    const pubsub = await emulatorClient();
    try {
      const publisher = createPubsubPublisher({ pubsub });
      await assert.rejects(publisher.publish('no-such-topic', encode('x')), (error: unknown) => {
        assert.ok(error instanceof PermanentError, String(error));
        assert.match(error.message, /no-such-topic.*does not exist/);
        assert.ok(error.cause !== undefined);
        return true;
      });
    } finally {
      await pubsub.close();
    }
  });

  it('refuses topic names Pub/Sub would refuse, before any request', async () => {
    const pubsub = await emulatorClient();
    try {
      const publisher = createPubsubPublisher({ pubsub });
      for (const name of ['ab', '1abc', 'goog-topic', 'has space', 'a/b', 'x'.repeat(256)]) {
        await assert.rejects(publisher.publish(name, encode('x')), PermanentError, name);
      }
    } finally {
      await pubsub.close();
    }
  });

  it('makes one Topic per name, batched for low latency', async () => {
    const pubsub = await emulatorClient();
    try {
      await pubsub.createTopic('cached');
      const made: [string, unknown][] = [];
      const topic = pubsub.topic.bind(pubsub);
      pubsub.topic = (name, options) => {
        made.push([name, options]);
        return topic(name, options);
      };
      const publisher = createPubsubPublisher({ pubsub });
      for (let i = 0; i < 5; i++) await publisher.publish('cached', encode(String(i)));
      assert.deepEqual(made, [['cached', { batching: { maxMessages: 100, maxMilliseconds: 0 } }]]);
    } finally {
      await pubsub.close();
    }
  });

  // What the deploy relies on: Pub/Sub itself moves a message nacked too often to the dead-letter topic.
  it('moves a message nacked past maxDeliveryAttempts to the dead-letter topic, counting deliveryAttempt up', async () => {
    const pubsub = await emulatorClient();
    const open: Subscription[] = [];
    try {
      const [work] = await pubsub.createTopic('work');
      const [dead] = await pubsub.createTopic('work-dead');
      const [deadSub] = await dead.createSubscription('work-dead-sub');
      const [workSub] = await work.createSubscription('work-sub', {
        ackDeadlineSeconds: 10,
        deadLetterPolicy: { deadLetterTopic: dead.name, maxDeliveryAttempts: 5 },
        retryPolicy: { minimumBackoff: { seconds: 0, nanos: 100_000_000 }, maximumBackoff: { seconds: 1 } },
      });
      open.push(workSub, deadSub);
      const [metadata] = await workSub.getMetadata();
      assert.equal(metadata.deadLetterPolicy?.maxDeliveryAttempts, 5);
      assert.equal(Number(metadata.retryPolicy?.maximumBackoff?.seconds), 1);

      const attempts: number[] = [];
      workSub.on('message', (message: Message) => {
        attempts.push(message.deliveryAttempt);
        message.nack();
      });
      const letters: Message[] = [];
      deadSub.on('message', (message: Message) => {
        letters.push(message);
        message.ack();
      });
      const id = await createPubsubPublisher({ pubsub }).publish('work', encode('poison'), { kind: 'bad' });
      const [letter] = await gather(async () => letters.splice(0), 1, 0);
      assert.ok(letter, `no dead letter after ${RECEIVE_TIMEOUT_MS} ms; deliveries: ${attempts.join(', ')}`);
      assert.deepEqual(attempts, [1, 2, 3, 4, 5]);
      assert.equal(letter.data.toString(), 'poison');
      assert.equal(letter.attributes['kind'], 'bad');
      assert.equal(letter.attributes['CloudPubSubDeadLetterSourceDeliveryCount'], '5');
      assert.equal(letter.attributes['CloudPubSubDeadLetterSourceSubscription'], 'work-sub');
      assert.notEqual(letter.id, id, 'the dead-letter topic gives it a new ID');
    } finally {
      await Promise.all(open.map((sub) => sub.close()));
      await pubsub.close();
    }
  });

  // As Eventarc delivers to the functions: pushes answered with an error are redelivered, then dead-lettered.
  it('dead-letters a pushed message whose endpoint keeps failing, after maxDeliveryAttempts pushes', async (t) => {
    const pubsub = await emulatorClient();
    const bodies: { message?: { data?: string; attributes?: Record<string, string> }; deliveryAttempt?: number }[] = [];
    const endpoint = createServer((request, response) => {
      let text = '';
      request.setEncoding('utf8');
      request.on('data', (chunk: string) => (text += chunk));
      request.on('end', () => {
        bodies.push(JSON.parse(text) as (typeof bodies)[number]);
        response.statusCode = 500;
        response.end();
      });
    });
    await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
    let deadSub: Subscription | undefined;
    try {
      const { port } = endpoint.address() as AddressInfo;
      const [work] = await pubsub.createTopic('pushed');
      const [dead] = await pubsub.createTopic('pushed-dead');
      [deadSub] = await dead.createSubscription('pushed-dead-sub');
      await work.createSubscription('pushed-push', {
        pushConfig: { pushEndpoint: `http://127.0.0.1:${port}/` },
        deadLetterPolicy: { deadLetterTopic: dead.name, maxDeliveryAttempts: 5 },
        retryPolicy: { minimumBackoff: { seconds: 0, nanos: 100_000_000 }, maximumBackoff: { seconds: 1 } },
      });
      const letters: Message[] = [];
      deadSub.on('message', (message: Message) => {
        letters.push(message);
        message.ack();
      });
      await createPubsubPublisher({ pubsub }).publish('pushed', encode('poison'), { kind: 'bad' });
      // The emulator waits about 3 s between pushes, whatever the retry policy says.
      const [letter] = await gather(async () => letters.splice(0), 1, 0, PUSH_TIMEOUT_MS);
      assert.ok(letter, `no dead letter after ${PUSH_TIMEOUT_MS} ms; pushes: ${bodies.length}`);
      assert.equal(bodies.length, 5);
      for (const body of bodies) {
        assert.equal(Buffer.from(body.message?.data ?? '', 'base64').toString(), 'poison');
        assert.equal(body.message?.attributes?.['kind'], 'bad');
      }
      assert.equal(letter.attributes['CloudPubSubDeadLetterSourceDeliveryCount'], '5');
      // Pub/Sub's push format has a deliveryAttempt for subscriptions with a dead-letter policy, which the functions
      // read to know their last attempt; the emulator (0.8.x) leaves it out, so that cannot be checked here.
      t.diagnostic(`deliveryAttempt in the pushes: ${bodies.map((body) => String(body.deliveryAttempt)).join(', ')}`);
    } finally {
      await deadSub?.close();
      await pubsub.close();
      endpoint.close();
    }
  });
});
