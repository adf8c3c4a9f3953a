import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { atDeadline } from '../../shared/adapters/deadline-timer.ts';
import { waitUntil } from '../helpers/wait.ts';

describe('atDeadline', () => {
  it('fires once its deadline has come, and not before', async () => {
    let fired = 0;
    const deadline = Date.now() + 50;
    atDeadline(deadline, () => {
      fired++;
      assert.ok(Date.now() >= deadline);
    });
    await waitUntil(() => fired === 1, 'the timer fires');
    await sleep(100);
    assert.equal(fired, 1);
  });

  it('waits for a deadline past what one setTimeout can hold, and cancels', async () => {
    let fired = false;
    const timer = atDeadline(Date.now() + 30 * 24 * 3600 * 1000, () => (fired = true));
    await sleep(50);
    timer.cancel();
    assert.equal(fired, false, 'a 30-day deadline does not fire at once');
  });
});
