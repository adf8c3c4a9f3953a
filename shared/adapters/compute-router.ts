import type { Compute, WorkerInfo } from '../ports/compute.ts';

/**
 * One Compute over several: each host type goes to the first adapter that runs it (containers before the process
 * sandbox, say). Stopping, listing and closing reach every adapter, so a worker is found whichever started it, even
 * after a restart. Throws on a host type no adapter runs.
 */
export function createComputeRouter(
  adapters: readonly Compute[],
  /** Host types known to be missing here, with the reason, for the verdicts of builds that ask for them. */
  unavailable: ReadonlyMap<string, string> = new Map(),
): Compute {
  const byHostType = new Map<string, Compute>();
  for (const adapter of adapters) {
    for (const hostType of adapter.hostTypes) if (!byHostType.has(hostType)) byHostType.set(hostType, adapter);
  }
  return {
    hostTypes: [...byHostType.keys()],
    async start(request) {
      const adapter = byHostType.get(request.hostType);
      if (adapter === undefined) {
        throw new Error(`no compute runs host type "${request.hostType}" (available: ${[...byHostType.keys()].join(', ')})`);
      }
      await adapter.start(request);
    },
    async stop(taskId) {
      await Promise.all(adapters.map((adapter) => adapter.stop(taskId)));
    },
    async list(): Promise<WorkerInfo[]> {
      return (await Promise.all(adapters.map((adapter) => adapter.list()))).flat();
    },
    async close() {
      await Promise.all(adapters.map((adapter) => adapter.close()));
    },
    machineOf(hostType, spotAllowed) {
      return byHostType.get(hostType)?.machineOf?.(hostType, spotAllowed);
    },
    async missingPrograms(hostType, programs) {
      return (await byHostType.get(hostType)?.missingPrograms?.(hostType, programs)) ?? [];
    },
    unavailableReason(hostType) {
      return unavailable.get(hostType) ?? adapters.map((adapter) => adapter.unavailableReason?.(hostType)).find(Boolean);
    },
  };
}
