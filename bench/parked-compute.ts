import { join } from 'node:path';
import type { Catalog } from '../shared/pipeline/deps.ts';
import type { Compute, WorkerInfo } from '../shared/ports/compute.ts';
import { silentLogger } from '../shared/ports/log.ts';
import type { Source } from '../shared/ports/source.ts';
import { startLocalRuntime } from '../shared/runtime/local-runtime.ts';

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

/** The embedded runtime in `dir` over `source` and a parked compute, with no poll timer and any free port: the control plane alone. */
export function startParkedRuntime(dir: string, catalog: Catalog, source: Source, compute: Compute = createParkedCompute()) {
  return startLocalRuntime({ dataDir: join(dir, 'data'), catalog, logger: silentLogger, pollIntervalMs: 0, port: 0, source, compute: async () => compute });
}
