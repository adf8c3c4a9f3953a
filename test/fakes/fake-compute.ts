import type { Compute, OnWorkerExit, WorkerExit, WorkerInfo, WorkerRequest } from '../../shared/ports/compute.ts';

export interface FakeComputeOptions {
  onExit: OnWorkerExit;
  /** Defaults to ['host'], like the process sandbox. */
  hostTypes?: readonly string[];
  /**
   * End workers at their deadline (reason 'deadline') by a real timer. Off by default: pipeline tests run on a fake
   * clock, where real deadlines would be long past.
   */
  enforceDeadlines?: boolean;
}

/** An in-memory Compute whose workers run until the test finishes them. */
export interface FakeCompute extends Compute {
  /** Every worker started, in order; a duplicate start adds nothing. */
  readonly started: WorkerRequest[];
  /** How many times start() was called, duplicates included. */
  readonly startCalls: number;
  /** Ends a live worker (default: exited with code 0) and calls onExit, synchronously. Throws for a task never started. */
  finish(taskId: string, exit?: Partial<Omit<WorkerExit, 'taskId'>>): void;
}

/** A fake compute for the pipeline's tests: records starts, idempotent by task ID, ends workers on demand. */
export function createFakeCompute(options: FakeComputeOptions): FakeCompute {
  const hostTypes = options.hostTypes ?? ['host'];
  const started: WorkerRequest[] = [];
  const seen = new Set<string>();
  const live = new Map<string, { request: WorkerRequest; timer?: NodeJS.Timeout }>();
  let startCalls = 0;
  let closed = false;

  function end(taskId: string, exit: Partial<Omit<WorkerExit, 'taskId'>>): void {
    const worker = live.get(taskId);
    if (worker === undefined) return;
    clearTimeout(worker.timer);
    live.delete(taskId);
    options.onExit({ reason: 'exited', code: 0, signal: null, ...exit, taskId });
  }

  return {
    hostTypes,
    started,
    get startCalls() {
      return startCalls;
    },
    async start(request) {
      startCalls++;
      if (closed) throw new Error('the fake compute is closed');
      if (!hostTypes.includes(request.hostType)) {
        throw new Error(`the fake compute cannot run host type "${request.hostType}"`);
      }
      if (seen.has(request.taskId)) return;
      seen.add(request.taskId);
      started.push(request);
      const worker: { request: WorkerRequest; timer?: NodeJS.Timeout } = { request };
      if (options.enforceDeadlines === true) {
        worker.timer = setTimeout(
          () => end(request.taskId, { reason: 'deadline', code: null, signal: 'SIGKILL' }),
          Math.max(0, Math.min(request.deadline - Date.now(), 2 ** 31 - 1)),
        );
      }
      live.set(request.taskId, worker);
    },
    async stop(taskId) {
      end(taskId, { reason: 'exited', code: null, signal: 'SIGKILL' });
    },
    async list(): Promise<WorkerInfo[]> {
      return [...live.values()].map(({ request }) => ({
        taskId: request.taskId,
        deadline: request.deadline,
        labels: { ...request.labels },
      }));
    },
    async close() {
      closed = true;
      for (const taskId of [...live.keys()]) end(taskId, { reason: 'exited', code: null, signal: 'SIGKILL' });
    },
    finish(taskId, exit = {}) {
      if (!seen.has(taskId)) throw new Error(`the fake compute never started a worker for task ${taskId}`);
      end(taskId, exit);
    },
  };
}
