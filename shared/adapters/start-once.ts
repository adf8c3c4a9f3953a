import type { Logger } from '../ports/log.ts';

/**
 * One worker per task within a process, for compute adapters: a start in flight is shared by a second caller, a
 * start that succeeded is not repeated (logged as a duplicate), and one that failed may be tried again, since no
 * worker came of it. Adapters still guard across processes their own way (a container or VM named after the task).
 */
export function createStartOnce(logger: Logger) {
  const started = new Set<string>();
  const starting = new Map<string, Promise<void>>();
  return {
    /** Runs `launch` for the task unless this process has started, or is starting, its worker. */
    start(taskId: string, launch: () => Promise<void>): Promise<void> {
      const pending = starting.get(taskId);
      if (pending !== undefined) return pending;
      if (started.has(taskId)) {
        logger.info('worker.duplicate-start', { taskId });
        return Promise.resolve();
      }
      started.add(taskId);
      // Through a promise, so a launch that throws before it returns one frees the task too.
      const launching = Promise.resolve()
        .then(launch)
        .catch((error: unknown) => {
          started.delete(taskId);
          throw error;
        })
        .finally(() => starting.delete(taskId));
      starting.set(taskId, launching);
      return launching;
    },
    /** Counts a worker this process found running (adopted after a restart) as started. */
    adopt(taskId: string): void {
      started.add(taskId);
    },
    /** The task's start in flight, if any. */
    pending(taskId: string): Promise<void> | undefined {
      return starting.get(taskId);
    },
    /** Every start in flight. */
    inFlight(): Promise<void>[] {
      return [...starting.values()];
    },
  };
}
