import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { DeadLetters } from '../../shared/ports/messages.ts';

const START = 1_700_000_000_000;
const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
const decode = (data: Uint8Array): string => new TextDecoder().decode(data);

/**
 * The DeadLetters contract: the embedded queue and the Firestore adapter pass these unchanged. `make` gives a fresh,
 * empty store of dead letters that reads time from `now`, which the tests move by hand.
 */
export function deadLettersContract(
  adapterName: string,
  make: (now: () => number) => Promise<{ deadLetters: DeadLetters; cleanup(): Promise<void> }>,
): void {
  describe(`DeadLetters contract: ${adapterName}`, () => {
    let clock = START;
    let deadLetters: DeadLetters;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      clock = START;
      ({ deadLetters, cleanup } = await make(() => clock));
    });
    afterEach(async () => {
      await cleanup();
    });

    it('records dead letters by hand and lists them newest first', async () => {
      for (let i = 1; i <= 3; i++) {
        clock += 1;
        await deadLetters.record({
          topic: 't',
          subscription: 's',
          data: encode(`letter ${i}`),
          attributes: { i: String(i) },
          attempts: i,
          reason: `reason ${i}`,
        });
      }
      const letters = await deadLetters.list();
      assert.deepEqual(
        letters.map((l) => [decode(l.data), l.reason, l.attempts, l.at, l.attributes['i']]),
        [
          ['letter 3', 'reason 3', 3, START + 3, '3'],
          ['letter 2', 'reason 2', 2, START + 2, '2'],
          ['letter 1', 'reason 1', 1, START + 1, '1'],
        ],
      );
      assert.equal(new Set(letters.map((l) => l.id)).size, 3);
      assert.deepEqual(
        (await deadLetters.list(2)).map((l) => l.reason),
        ['reason 3', 'reason 2'],
      );
    });

    it('keeps every field, arbitrary bytes and attributes, and copies the data', async () => {
      const data = Uint8Array.from({ length: 256 }, (_, i) => i);
      const attributes = { note: 'ünïcødé ✓', empty: '' };
      await deadLetters.record({ topic: 'topic-a', subscription: 'sub-a', data, attributes, attempts: 5, reason: 'why' });
      data[0] = 99;
      attributes.note = 'changed';
      const [letter, ...rest] = await deadLetters.list();
      assert.equal(rest.length, 0);
      assert.ok(letter);
      assert.equal(typeof letter.id, 'string');
      assert.notEqual(letter.id, '');
      assert.deepEqual(
        { ...letter, id: undefined, data: [...letter.data] },
        {
          id: undefined,
          topic: 'topic-a',
          subscription: 'sub-a',
          data: Array.from({ length: 256 }, (_, i) => i),
          attributes: { note: 'ünïcødé ✓', empty: '' },
          attempts: 5,
          reason: 'why',
          at: START,
        },
      );
      letter.data[1] = 42;
      assert.equal((await deadLetters.list())[0]?.data[1], 1, 'a listed letter is a copy');
    });

    it('lists nothing when empty, and honours a limit of 0', async () => {
      assert.deepEqual(await deadLetters.list(), []);
      await deadLetters.record({ topic: 't', subscription: 's', data: encode('x'), attributes: {}, attempts: 1, reason: 'r' });
      assert.deepEqual(await deadLetters.list(0), []);
      assert.equal((await deadLetters.list(1)).length, 1);
      await assert.rejects(deadLetters.list(-1), /limit/);
    });
  });
}
