import type { Compute, WorkerInfo } from '../shared/ports/compute.ts';

/**
 * A compute whose workers start and never end: each is listed as alive (so the reaper leaves it be) until stopped.
 * For benchmarks of the control plane alone; `onStart` hears the running count after each start.
 */
export function createParkedCompute(onStart: (started: number) => void = () => {}): Compute {
  const alive = new Map<string, WorkerInfo>();
  let started = 0;
  return {
    hostTypes: ['host'],
    async start(request) {
      if (alive.has(request.taskId)) return;
      alive.set(request.taskId, { taskId: request.taskId, deadline: request.deadline, labels: request.labels });
      onStart(++started);
    },
    async stop(taskId) {
      alive.delete(taskId);
    },
    async list() {
      return [...alive.values()];
    },
    async close() {
      alive.clear();
    },
  };
}
