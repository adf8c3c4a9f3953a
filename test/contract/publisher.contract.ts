import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { Publisher } from '../../shared/ports/messages.ts';

/** A message as a subscriber got it. */
export interface Received {
  messageId: string;
  data: Uint8Array;
  attributes: Record<string, string>;
}

/** A publisher under test, with the means to see what its messages reach. */
export interface PublisherHarness {
  publisher: Publisher;
  /** Makes `topic` exist, with a new subscription on it that gets what is published from now on. */
  subscribe(topic: string, subscription: string): Promise<void>;
  /**
   * Waits until `count` messages have reached `subscription` (at most a few seconds), then `settleMs` more for any
   * extra, acks them, and returns every message it got since the last call, in any order.
   */
  receive(subscription: string, count: number, settleMs?: number): Promise<Received[]>;
  cleanup(): Promise<void>;
}

const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
const decode = (data: Uint8Array): string => new TextDecoder().decode(data);

/** The Publisher contract: every adapter passes these unchanged. `make` gives a fresh harness with no topics. */
export function publisherContract(adapterName: string, make: () => Promise<PublisherHarness>): void {
  describe(`Publisher contract: ${adapterName}`, () => {
    let harness: PublisherHarness;
    beforeEach(async () => {
      harness = await make();
    });
    afterEach(async () => {
      await harness.cleanup();
    });

    it('publishes with attributes and resolves with the ID the message is delivered under', async () => {
      await harness.subscribe('builds', 'plan');
      const id = await harness.publisher.publish('builds', encode('hello'), { kind: 'greeting' });
      assert.equal(typeof id, 'string');
      assert.notEqual(id, '');
      const [message, ...rest] = await harness.receive('plan', 1);
      assert.equal(rest.length, 0);
      assert.equal(message?.messageId, id);
      assert.equal(decode(message.data), 'hello');
      assert.deepEqual(message.attributes, { kind: 'greeting' });
      await harness.publisher.publish('builds', encode('bare'));
      const [bare] = await harness.receive('plan', 1);
      assert.deepEqual(bare?.attributes, {}, 'no attributes given, none delivered');
    });

    it('gives every message its own ID', async () => {
      await harness.subscribe('many', 'all');
      const ids = await Promise.all(
        Array.from({ length: 25 }, (_, i) => harness.publisher.publish('many', encode(String(i)))),
      );
      assert.equal(new Set(ids).size, 25);
      const received = await harness.receive('all', 25);
      assert.deepEqual(new Set(received.map((m) => m.messageId)), new Set(ids));
      const byId = new Map(received.map((m) => [m.messageId, decode(m.data)]));
      ids.forEach((id, i) => assert.equal(byId.get(id), String(i), 'each ID names its own message'));
    });

    it('round-trips arbitrary bytes and attributes, and copies them before it returns', async () => {
      await harness.subscribe('bytes', 'raw');
      const data = Uint8Array.from({ length: 256 }, (_, i) => i);
      const attributes = { 'content-type': 'application/octet-stream', note: 'ünïcødé ✓', empty: '' };
      const publishing = harness.publisher.publish('bytes', data, attributes);
      data.fill(0);
      attributes.note = 'changed';
      await publishing;
      const [message] = await harness.receive('raw', 1);
      assert.deepEqual([...(message?.data ?? [])], Array.from({ length: 256 }, (_, i) => i));
      assert.deepEqual(message?.attributes, {
        'content-type': 'application/octet-stream',
        note: 'ünïcødé ✓',
        empty: '',
      });
    });

    it('fans a message out to every subscription of its topic, and only those', async () => {
      await harness.subscribe('fan', 'one');
      await harness.subscribe('fan', 'two');
      await harness.subscribe('elsewhere', 'three');
      const id = await harness.publisher.publish('fan', encode('fan'));
      const [one] = await harness.receive('one', 1);
      const [two] = await harness.receive('two', 1);
      assert.equal(one?.messageId, id);
      assert.equal(two?.messageId, id);
      assert.equal(decode(two.data), 'fan');
      assert.deepEqual(await harness.receive('three', 0, 300), [], 'another topic gets nothing');
    });
  });
}
