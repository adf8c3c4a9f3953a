import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { familyRates, formatCost, machineShape, minimumBilledSeconds, pricePerSecond, taskCost } from '../../shared/core/cost/prices.ts';
import { topics } from '../../shared/core/model/messages.ts';
import type { Machine } from '../../shared/core/model/types.ts';
import { blobKeys, type TaskResult } from '../../shared/core/model/wire.ts';
import { publishMessage } from '../../shared/core/pipeline/publish.ts';
import { collections } from '../../shared/ports/state.ts';
import { dashboardBody } from '../helpers/dashboard-client.ts';
import { createPipelineHarness } from '../helpers/pipeline-harness.ts';
import { finish, launchOne, result } from '../helpers/pipeline-steps.ts';

const close = (a: number | undefined, b: number) => assert.ok(a !== undefined && Math.abs(a - b) < 1e-9, `${a} is not ${b}`);

describe('price table', () => {
  it('prices the machine types the host types use, per second, from per-vCPU and per-GB rates', () => {
    // e2-standard-2: 2 vCPUs and 8 GB at the e2 rates: $0.067006 an hour, on demand.
    close(pricePerSecond('e2-standard-2', false), 0.067006 / 3600);
    for (const type of ['e2-standard-2', 'e2-standard-4', 'e2-standard-8', 'n2-standard-2', 'n2-standard-4', 'n2-standard-8', 'c3-standard-4', 'c3-standard-8', 't2a-standard-4']) {
      const onDemand = pricePerSecond(type, false);
      const spot = pricePerSecond(type, true);
      assert.ok(onDemand !== undefined && spot !== undefined, `${type} is priced`);
      assert.ok(spot < onDemand / 2, `${type}: Spot is far cheaper than on-demand`);
    }
    // Twice the machine, twice the price.
    close(pricePerSecond('n2-standard-8', false), 4 * (pricePerSecond('n2-standard-2', false) ?? 0));
    assert.deepEqual(machineShape('c3-highcpu-4'), { family: 'c3', vcpus: 4, memoryGb: 8 });
    for (const family of Object.keys(familyRates)) assert.ok(machineShape(`${family}-standard-2`));
  });

  it('leaves a machine type it does not know unpriced, never free', () => {
    for (const type of ['n1-standard-1', 'e2-micro', 't2a-highcpu-4', 'e2-standard-0', 'standard', '']) {
      assert.equal(pricePerSecond(type, false), undefined, type);
      assert.equal(taskCost(type, false, 600), undefined, type);
    }
  });

  it('bills at least a minute, then by the second, with the boot disk when given', () => {
    const rate = pricePerSecond('e2-standard-4', true) ?? 0;
    close(taskCost('e2-standard-4', true, 5), rate * minimumBilledSeconds);
    close(taskCost('e2-standard-4', true, 0), rate * minimumBilledSeconds);
    close(taskCost('e2-standard-4', true, 203), rate * 203);
    close(taskCost('e2-standard-4', false, 3600), 0.134012);
    const withDisk = taskCost('e2-standard-4', true, 3600, { diskGb: 50 }) ?? 0;
    close(withDisk - (taskCost('e2-standard-4', true, 3600) ?? 0), (50 * 0.1) / 730);
    // pd-balanced unless the machine names another disk type; each at its own rate; an unknown one is unpriced.
    close(taskCost('e2-standard-4', true, 3600, { diskGb: 50, diskType: 'pd-balanced' }), withDisk);
    close((taskCost('e2-standard-4', true, 3600, { diskGb: 50, diskType: 'pd-standard' }) ?? 0) - (taskCost('e2-standard-4', true, 3600) ?? 0), (50 * 0.04) / 730);
    close((taskCost('e2-standard-4', true, 3600, { diskGb: 50, diskType: 'pd-ssd' }) ?? 0) - (taskCost('e2-standard-4', true, 3600) ?? 0), (50 * 0.17) / 730);
    assert.equal(taskCost('e2-standard-4', true, 3600, { diskGb: 50, diskType: 'hyperdisk-balanced' }), undefined);
  });

  it('shows local and unpriced costs as such', () => {
    assert.equal(formatCost(0, true), 'local');
    assert.equal(formatCost(undefined, false), 'unpriced');
    assert.equal(formatCost(0.012345, false), '$0.0123');
    assert.equal(formatCost(12.345, false), '$12.35');
  });
});

describe('cost of a build', () => {
  const machine: Machine = { type: 'e2-standard-2', spot: true, diskGb: 50 };

  it('records each attempt\'s cost on its task, from launch to finish, and their sum on the build, once', async () => {
    const h = await createPipelineHarness({ machine });
    const { buildId: id, taskId: first } = await launchOne(h);
    assert.deepEqual((await h.state.get(collections.tasks, first))?.machine, machine);
    // The first worker vanishes after 2 minutes: a lost attempt, retried, and still paid for.
    h.advance(120_000);
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: first, cause: 'exited', exit: { reason: 'vanished', code: null, signal: null } });
    await h.drain();
    const second = (await h.state.get(collections.builds, id))?.taskId;
    assert.ok(second && second !== first);
    h.advance(300_000);
    await finish(h, second, 'passed');

    const lost = await h.state.get(collections.tasks, first);
    const passed = await h.state.get(collections.tasks, second);
    close(lost?.costUsd, taskCost('e2-standard-2', true, 120, { diskGb: 50 }) ?? NaN);
    close(passed?.costUsd, taskCost('e2-standard-2', true, 300, { diskGb: 50 }) ?? NaN);
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'passed');
    close(build?.costUsd, (lost?.costUsd ?? 0) + (passed?.costUsd ?? 0));

    // A duplicate notice adds nothing.
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: second, cause: 'result' });
    await h.drain();
    close((await h.state.get(collections.builds, id))?.costUsd, (lost?.costUsd ?? 0) + (passed?.costUsd ?? 0));

    const api = JSON.parse(await dashboardBody(h, `/api/builds/${id}`)) as { cost: { usd: number; local: boolean; workers: number }; tasks: Array<{ costUsd?: number }> };
    assert.equal(api.cost.local, false);
    assert.equal(api.cost.workers, 2);
    close(api.cost.usd, build?.costUsd ?? NaN);
    assert.ok(api.tasks.every((task) => typeof task.costUsd === 'number'));
    const page = await dashboardBody(h, `/build/${id}`);
    assert.match(page, new RegExp(`cost \\${formatCost(build?.costUsd, false)} on 2 workers`));
    assert.match(page, /e2-standard-2 spot/);
  });

  it('sums a sharded build: its make worker and every shard worker', async () => {
    const h = await createPipelineHarness({ machine: { type: 'n2-standard-4', spot: false } });
    const id = await h.request('mod');
    const makeId = (await h.state.get(collections.builds, id))?.sharding?.makeTaskId;
    const snapshotKey = (await h.state.get(collections.builds, id))?.sharding?.snapshotKey;
    assert.ok(makeId && snapshotKey);
    h.advance(203_000);
    await h.blobs.put(blobKeys.snapshot(snapshotKey), 'a snapshot');
    const units = ['example.com/m/a', 'example.com/m/b', 'example.com/m/c'];
    const make: TaskResult = {
      ...result(makeId, 'passed'),
      output: units.map((unit) => `TestX\nok  \t${unit}\t0.01s\n`).join(''),
      snapshot: { bytes: 10, files: 1, packSeconds: 1, uploadSeconds: 1 },
    };
    await h.blobs.put(blobKeys.result(makeId), JSON.stringify(make));
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: makeId, cause: 'result' });
    await h.drain();
    const shardIds = (await h.state.get(collections.builds, id))?.sharding?.shardTaskIds ?? [];
    assert.equal(shardIds.length, 3);
    h.advance(400_000);
    for (const shardId of shardIds) {
      const shard = await h.state.get(collections.tasks, shardId);
      const steps = (shard?.units ?? []).map((unit) => ({ name: unit.name, exitCode: 0, durationMs: 1000 }));
      await h.blobs.put(blobKeys.result(shardId), JSON.stringify({ ...result(shardId, 'passed'), steps }));
      await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: shardId, cause: 'result' });
    }
    await h.drain();
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'passed');
    const expected = (taskCost('n2-standard-4', false, 203) ?? NaN) + 3 * (taskCost('n2-standard-4', false, 400) ?? NaN);
    close(build?.costUsd, expected);
    const page = await dashboardBody(h, `/build/${id}`);
    assert.match(page, new RegExp(`cost \\${formatCost(expected, false)} on 4 workers`));
  });

  it('costs nothing on this machine, and says "local"', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    h.advance(60_000);
    await finish(h, taskId, 'passed');
    const task = await h.state.get(collections.tasks, taskId);
    assert.equal(task?.machine, undefined);
    assert.equal(task?.costUsd, 0);
    assert.equal((await h.state.get(collections.builds, id))?.costUsd, undefined, 'nothing to add, nothing written');
    const api = JSON.parse(await dashboardBody(h, `/api/builds/${id}`)) as { cost: { usd: number; local: boolean } };
    assert.deepEqual({ usd: api.cost.usd, local: api.cost.local }, { usd: 0, local: true });
    assert.match(await dashboardBody(h, `/build/${id}`), /cost local \(1 worker on this machine\)/);
  });

  it('leaves an unpriced machine\'s task without a cost, and says so', async () => {
    const h = await createPipelineHarness({ machine: { type: 'm9-imaginary-4', spot: false } });
    const { buildId: id, taskId } = await launchOne(h);
    await finish(h, taskId, 'passed');
    assert.equal((await h.state.get(collections.tasks, taskId))?.costUsd, undefined);
    assert.match(await dashboardBody(h, `/build/${id}`), /1 on machines with no price/);
  });
});
