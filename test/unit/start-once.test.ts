import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createStartOnce } from '../../shared/adapters/start-once.ts';
import type { Logger } from '../../shared/ports/log.ts';

function setup() {
  const events: string[] = [];
  const logger: Logger = { info: (event) => events.push(event), warn: (event) => events.push(event), error: (event) => events.push(event) };
  return { once: createStartOnce(logger), events };
}

describe('start once', () => {
  it('shares a start in flight, and does not repeat one that succeeded', async () => {
    const { once, events } = setup();
    let launches = 0;
    const launch = async () => void launches++;
    await Promise.all([once.start('t', launch), once.start('t', launch)]);
    await once.start('t', launch);
    assert.equal(launches, 1);
    assert.deepEqual(events, ['worker.duplicate-start']);
  });

  it('lets a start that failed be tried again, whether the launch rejected or threw before it returned', async () => {
    const { once } = setup();
    let launches = 0;
    await assert.rejects(once.start('rejects', async () => Promise.reject(new Error('no VM'))), /no VM/);
    await assert.rejects(
      once.start('throws', () => {
        throw new Error('bad label');
      }),
      /bad label/,
    );
    for (const taskId of ['rejects', 'throws']) await once.start(taskId, async () => void launches++);
    assert.equal(launches, 2, 'each task was launched again after its failure');
    assert.deepEqual(once.inFlight(), []);
  });
});
