import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { blobKeys } from '../../shared/core/model/wire.ts';
import type { Compute, OnWorkerExit, WorkerExit, WorkerRequest } from '../../shared/ports/compute.ts';
import { taskSpecFor, type FakeBlobServer } from '../helpers/fake-blob-server.ts';
import { waitUntil } from '../helpers/wait.ts';

/** What a contract worker does: exit 0 soon, exit non-zero soon, or run until it is killed. */
export type WorkerBehaviour = 'succeed' | 'fail' | 'hang';

/** One compute adapter, set up for the contract. */
export interface ComputeHarness {
  compute: Compute;
  /** A request (for compute.hostTypes[0]) whose worker behaves as asked. */
  request(
    taskId: string,
    behaviour: WorkerBehaviour,
    options?: { deadline?: number; labels?: Record<string, string> },
  ): WorkerRequest;
  /** How many processes (machines, containers) of the task's worker are still running. */
  leftovers(taskId: string): Promise<number>;
  /** Closes the adapter if the test did not, and removes what the harness made. */
  cleanup(): Promise<void>;
  /**
   * Where the adapter's platform has no analogue of a part of the port. Every adapter that leaves this out is held
   * to the whole contract; one that sets a field is held to what its platform does instead, and nothing less.
   */
  platform?: {
    /**
     * onExit is never called (Compute Engine: the result landing wakes collect, and the reaper finds VMs that are
     * gone). The contract then checks that onExit stays silent, and that each worker is gone from list() and
     * leftovers soon after it ended or was stopped, rather than by the time stop resolved.
     */
    reportsExits?: false;
    /**
     * close() stops no worker (Compute Engine: VMs outlive the process; collect and the reaper delete them). The
     * contract then checks that close leaves them running and refuses new starts.
     */
    closeStopsWorkers?: false;
    /** The nearest deadline the platform enforces (Compute Engine: 30 s of run time); the deadline test uses it. */
    minDeadlineMs?: number;
  };
}

/**
 * The compute port's contract, which every adapter must pass unchanged: idempotent start, list, stop, close,
 * exactly one onExit per worker after it is gone, and the deadline.
 */
export function computeContract(name: string, make: (onExit: OnWorkerExit) => Promise<ComputeHarness>): void {
  async function setup() {
    const exits: WorkerExit[] = [];
    const harness = await make((exit) => exits.push(exit));
    const compute = harness.compute;
    const reports = harness.platform?.reportsExits !== false;
    /** Resolves when the task's worker is neither listed nor left running; at once for adapters that report exits. */
    const gone = async (taskId: string, what: string, timeoutMs?: number) => {
      const check = async () => !(await compute.list()).some((worker) => worker.taskId === taskId) && (await harness.leftovers(taskId)) === 0;
      if (reports) return;
      await waitUntil(check, what, timeoutMs === undefined ? {} : { timeoutMs });
    };
    return { harness, compute, exits, reports, gone, exitsOf: (taskId: string) => exits.filter((e) => e.taskId === taskId) };
  }

  describe(`compute contract: ${name}`, () => {
    test('names its host types and refuses another, naming it', async () => {
      const { harness, compute } = await setup();
      try {
        assert.ok(compute.hostTypes.length > 0);
        const request = { ...harness.request(newTaskId(), 'succeed'), hostType: 'no-such-host-type' };
        await assert.rejects(compute.start(request), /no-such-host-type/);
        assert.deepEqual(await compute.list(), []);
      } finally {
        await harness.cleanup();
      }
    });

    test('a worker that succeeds ends once: reason exited, code 0, not listed after', async () => {
      const { harness, compute, exitsOf, reports, gone } = await setup();
      try {
        const taskId = newTaskId();
        await compute.start(harness.request(taskId, 'succeed'));
        if (!reports) {
          await gone(taskId, 'the worker ends by itself');
          assert.deepEqual(exitsOf(taskId), [], 'an adapter that does not report exits never calls onExit');
          return;
        }
        await waitUntil(() => exitsOf(taskId).length > 0, 'the worker exits', { everyMs: 20 });
        assert.deepEqual(exitsOf(taskId), [{ taskId, reason: 'exited', code: 0, signal: null }]);
        assert.deepEqual(await compute.list(), []);
        assert.equal(await harness.leftovers(taskId), 0);
        await sleep(200);
        assert.equal(exitsOf(taskId).length, 1, 'exactly one onExit');
      } finally {
        await harness.cleanup();
      }
    });

    test('a failing worker reports its non-zero code', async () => {
      const { harness, compute, exitsOf, reports, gone } = await setup();
      try {
        const taskId = newTaskId();
        await compute.start(harness.request(taskId, 'fail'));
        if (!reports) {
          // Its code is the platform's to see, not the port's.
          await gone(taskId, 'the failing worker ends by itself');
          assert.deepEqual(exitsOf(taskId), []);
          return;
        }
        await waitUntil(() => exitsOf(taskId).length > 0, 'the worker exits', { everyMs: 20 });
        const [exit] = exitsOf(taskId);
        assert.equal(exit?.reason, 'exited');
        assert.ok(exit?.code !== 0 && exit?.code !== null, `code ${exit?.code}`);
      } finally {
        await harness.cleanup();
      }
    });

    test('start is idempotent by task ID: concurrent, repeated and after exit', async () => {
      const { harness, compute, exitsOf, reports, gone } = await setup();
      try {
        const taskId = newTaskId();
        const request = harness.request(taskId, 'hang');
        await Promise.all([compute.start(request), compute.start(request), compute.start(request)]);
        await compute.start(request);
        assert.deepEqual(
          (await compute.list()).map((worker) => worker.taskId),
          [taskId],
        );
        await compute.stop(taskId);
        await gone(taskId, 'the stopped worker is gone');
        await compute.start(request);
        await sleep(300);
        assert.deepEqual(await compute.list(), [], 'a task that had a worker gets no second one');
        assert.equal(await harness.leftovers(taskId), 0);
        assert.equal(exitsOf(taskId).length, reports ? 1 : 0);
      } finally {
        await harness.cleanup();
      }
    });

    test('list shows live workers with their deadline and labels', async () => {
      const { harness, compute } = await setup();
      try {
        const a = newTaskId();
        const b = newTaskId();
        const deadline = Date.now() + 120_000;
        await compute.start(harness.request(a, 'hang', { deadline, labels: { build: 'one' } }));
        await compute.start(harness.request(b, 'hang', { deadline: deadline + 1, labels: { build: 'two' } }));
        const listed = (await compute.list()).sort((x, y) => x.deadline - y.deadline);
        assert.deepEqual(listed, [
          { taskId: a, deadline, labels: { build: 'one' } },
          { taskId: b, deadline: deadline + 1, labels: { build: 'two' } },
        ]);
      } finally {
        await harness.cleanup();
      }
    });

    test('stop kills a live worker: one onExit before it resolves, nothing left; unknown IDs are a no-op', async () => {
      const { harness, compute, exitsOf, reports, gone } = await setup();
      try {
        const taskId = newTaskId();
        await compute.start(harness.request(taskId, 'hang'));
        if (!reports) {
          assert.equal(await harness.leftovers(taskId), 1, 'the worker runs');
          await compute.stop(taskId);
          await gone(taskId, 'the stopped worker is gone');
          await compute.stop(taskId);
          await compute.stop(newTaskId());
          await sleep(200);
          assert.deepEqual(exitsOf(taskId), []);
          return;
        }
        await compute.stop(taskId);
        assert.equal(exitsOf(taskId).length, 1, 'onExit was called before stop resolved');
        assert.equal(exitsOf(taskId)[0]?.reason, 'exited');
        assert.equal(await harness.leftovers(taskId), 0);
        assert.deepEqual(await compute.list(), []);
        await compute.stop(taskId);
        await compute.stop(newTaskId());
        await sleep(200);
        assert.equal(exitsOf(taskId).length, 1);
      } finally {
        await harness.cleanup();
      }
    });

    test('the deadline kills the worker: reason deadline, nothing left', async () => {
      const { harness, compute, exitsOf, reports, gone } = await setup();
      try {
        const taskId = newTaskId();
        const started = Date.now();
        const afterMs = Math.max(1000, harness.platform?.minDeadlineMs ?? 0);
        await compute.start(harness.request(taskId, 'hang', { deadline: Date.now() + afterMs }));
        if (!reports) {
          await sleep(afterMs - 300);
          assert.equal(await harness.leftovers(taskId), 1, 'not before the deadline');
          await gone(taskId, 'the deadline ends the worker', 15_000 + 300);
          assert.deepEqual(exitsOf(taskId), []);
          return;
        }
        await waitUntil(() => exitsOf(taskId).length > 0, 'the deadline ends the worker', { everyMs: 20 });
        assert.ok(Date.now() - started >= 900, 'not before the deadline');
        assert.equal(exitsOf(taskId)[0]?.reason, 'deadline');
        assert.equal(await harness.leftovers(taskId), 0);
        assert.deepEqual(await compute.list(), []);
        await sleep(200);
        assert.equal(exitsOf(taskId).length, 1);
      } finally {
        await harness.cleanup();
      }
    });

    test('close kills every worker, each with one onExit, before it resolves', async () => {
      const { harness, compute, exitsOf } = await setup();
      try {
        const ids = [newTaskId(), newTaskId(), newTaskId()];
        for (const taskId of ids) await compute.start(harness.request(taskId, 'hang'));
        assert.equal((await compute.list()).length, 3);
        if (harness.platform?.closeStopsWorkers === false) {
          await compute.close();
          await assert.rejects(compute.start(harness.request(newTaskId(), 'hang')), 'a closed adapter starts nothing');
          await sleep(200);
          assert.equal((await compute.list()).length, 3, 'close left the workers running');
          for (const taskId of ids) assert.equal(await harness.leftovers(taskId), 1);
          for (const taskId of ids) assert.equal(exitsOf(taskId).length, 0, 'a worker left running has not exited');
          return;
        }
        await compute.close();
        for (const taskId of ids) {
          assert.equal(exitsOf(taskId).length, 1, `one onExit for ${taskId}`);
          assert.equal(await harness.leftovers(taskId), 0);
        }
        assert.deepEqual(await compute.list(), []);
      } finally {
        await harness.cleanup();
      }
    });
  });
}

/**
 * A harness's `request` for workers that run the real agent against `server`, on `hostType`: `true`, or `sleep 300`
 * to hang; a failing worker's result upload is refused, which makes the agent exit 1.
 */
export function agentRequests(server: FakeBlobServer, hostType: string): ComputeHarness['request'] {
  return (taskId, behaviour, options = {}) => {
    const steps = behaviour === 'hang' ? [['sleep', '300']] : [['true']];
    if (behaviour === 'fail') server.failPuts(blobKeys.result(taskId), 403, Number.POSITIVE_INFINITY);
    return {
      taskId,
      hostType,
      spec: taskSpecFor(server, taskId, { steps }),
      deadline: options.deadline ?? Date.now() + 120_000,
      labels: options.labels ?? {},
    };
  };
}

/** A task ID as the pipeline makes them: 24 hex digits. */
export function newTaskId(): string {
  return randomBytes(12).toString('hex');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
