import type { ReapTick } from '../model/messages.ts';
import { topics } from '../model/messages.ts';
import type { WorkerExit } from '../../ports/compute.ts';
import { collections } from '../../ports/state.ts';
import type { PipelineDeps } from '../pipeline/deps.ts';
import { publishMessage } from '../pipeline/publish.ts';

/** What one sweep did. */
export interface ReapSummary {
  /** Workers past their deadline that were removed. */
  expired: string[];
  /** Launched tasks with no worker alive, reported as vanished. */
  vanished: string[];
}

/**
 * The `reap` function, run on a schedule and at start: removes every worker past its deadline (plus a grace for its
 * last upload) and reports it as killed at its deadline, and reports every launched task whose worker is gone as
 * vanished, so `collect` retries it or ends its build. Both reports go through `task-finished`, where duplicates are
 * no-ops, so a sweep that overlaps a normal exit changes nothing.
 */
export function createReap(deps: Pick<PipelineDeps, 'state' | 'publisher' | 'compute' | 'logger' | 'now' | 'options'>) {
  return async function reap(_tick: ReapTick): Promise<ReapSummary> {
    const summary: ReapSummary = { expired: [], vanished: [] };
    const now = deps.now();
    const workers = await deps.compute.list();
    for (const worker of workers) {
      if (worker.deadline + deps.options.reapGraceMs > now) continue;
      await deps.compute.stop(worker.taskId);
      await report(worker.taskId, 'deadline');
      summary.expired.push(worker.taskId);
      deps.logger.warn('reap.expired', { task: worker.taskId, deadline: new Date(worker.deadline).toISOString() });
    }
    const alive = new Set(workers.map((worker) => worker.taskId));
    const launched = await deps.state.query(collections.tasks, { where: { status: 'launched' } });
    for (const task of launched) {
      // A worker is listed from the moment it starts; the grace covers an adapter that lists with a lag.
      if (alive.has(task.id) || (task.launchedAt ?? 0) + deps.options.reapGraceMs > now) continue;
      await report(task.id, 'vanished');
      summary.vanished.push(task.id);
      deps.logger.warn('reap.vanished', { task: task.id, build: task.buildId, builder: task.builder });
    }
    return summary;
  };

  function report(taskId: string, reason: WorkerExit['reason']): Promise<string> {
    return publishMessage(deps.publisher, topics.taskFinished, {
      v: 1,
      taskId,
      cause: 'exited',
      exit: { reason, code: null, signal: null },
    });
  }
}
