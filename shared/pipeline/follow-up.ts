import { topics } from '../model/messages.ts';
import { terminalBuildStatuses, type Build } from '../model/types.ts';
import { collections } from '../ports/state.ts';
import type { PipelineDeps } from './deps.ts';
import { publishMessage } from './publish.ts';

/**
 * Publishes whatever message should follow from a build's stored state: `build-finished` for a verdict not yet
 * reported, `task-ready` for a task not yet launched. Handlers call it after every state change, and again on every
 * redelivery, so a crash between a commit and a publish is healed by the redelivery; downstream handlers are
 * idempotent, so a message sent twice does nothing the second time.
 */
export async function publishFollowUp(deps: Pick<PipelineDeps, 'state' | 'publisher'>, build: Build): Promise<void> {
  if (terminalBuildStatuses.includes(build.status)) {
    if (build.reportedAt === undefined) {
      await publishMessage(deps.publisher, topics.buildFinished, { v: 1, buildId: build.id });
    }
    return;
  }
  if (build.taskId === undefined) return;
  const task = await deps.state.get(collections.tasks, build.taskId);
  if (task?.status === 'pending') await publishMessage(deps.publisher, topics.taskReady, { v: 1, taskId: task.id });
}
