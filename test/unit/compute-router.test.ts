import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createComputeRouter } from '../../shared/adapters/compute-router.ts';
import type { WorkerExit, WorkerRequest } from '../../shared/ports/compute.ts';
import { createFakeCompute } from '../fakes/fake-compute.ts';

function request(taskId: string, hostType: string): WorkerRequest {
  return { taskId, hostType, deadline: Date.now() + 60_000, labels: {}, spec: {} as WorkerRequest['spec'] };
}

describe('compute router', () => {
  it('sends each host type to the first adapter that runs it, and reaches all to list, stop and close', async () => {
    const exits: WorkerExit[] = [];
    const containers = createFakeCompute({ onExit: (exit) => exits.push(exit), hostTypes: ['linux-amd64'] });
    const sandbox = createFakeCompute({ onExit: (exit) => exits.push(exit), hostTypes: ['host', 'linux-amd64'] });
    const router = createComputeRouter([containers, sandbox]);
    assert.deepEqual([...router.hostTypes].sort(), ['host', 'linux-amd64']);
    await router.start(request('a'.repeat(24), 'linux-amd64'));
    await router.start(request('b'.repeat(24), 'host'));
    assert.equal(containers.started.length, 1);
    assert.equal(sandbox.started.length, 1);
    assert.deepEqual((await router.list()).map((worker) => worker.taskId).sort(), ['a'.repeat(24), 'b'.repeat(24)]);
    await router.stop('a'.repeat(24));
    assert.deepEqual(exits.map((exit) => exit.taskId), ['a'.repeat(24)]);
    await router.close();
    assert.deepEqual(await router.list(), []);
    await assert.rejects(router.start(request('c'.repeat(24), 'windows-amd64')), /no compute runs host type "windows-amd64"/);
  });

  it('says why a host type is missing, when it was told', () => {
    const sandbox = createFakeCompute({ onExit: () => {} });
    const router = createComputeRouter([sandbox], new Map([['linux-arm64', 'not available on this host: no binfmt_misc']]));
    assert.equal(router.unavailableReason?.('linux-arm64'), 'not available on this host: no binfmt_misc');
    assert.equal(router.unavailableReason?.('linux-amd64'), undefined);
  });
});
