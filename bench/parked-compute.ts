import { join } from 'node:path';
import type { Catalog } from '../shared/core/pipeline/deps.ts';
import type { Compute } from '../shared/ports/compute.ts';
import { silentLogger } from '../shared/ports/log.ts';
import type { Source } from '../shared/ports/source.ts';
import { startLocalRuntime } from '../shared/runtimes/local/local-runtime.ts';
import { createFakeCompute } from '../test/fakes/fake-compute.ts';

/**
 * A compute whose workers start and never end: each is listed as alive (so the reaper leaves it be) until stopped.
 * For benchmarks of the control plane alone; `onStart` hears the running count after each start. It is the tests'
 * fake compute, whose exits (on stop and close only) nobody hears.
 */
export function createParkedCompute(onStart: (started: number) => void = () => {}): Compute {
  const fake = createFakeCompute({ onExit() {} });
  return {
    hostTypes: fake.hostTypes,
    async start(request) {
      const before = fake.started.length;
      await fake.start(request);
      if (fake.started.length > before) onStart(fake.started.length);
    },
    stop: (taskId) => fake.stop(taskId),
    list: () => fake.list(),
    close: () => fake.close(),
  };
}

/** The embedded runtime in `dir` over `source` and a parked compute, with no poll timer and any free port: the control plane alone. */
export function startParkedRuntime(dir: string, catalog: Catalog, source: Source, compute: Compute = createParkedCompute()) {
  return startLocalRuntime({ dataDir: join(dir, 'data'), catalog, logger: silentLogger, pollIntervalMs: 0, port: 0, source, compute: async () => compute });
}
