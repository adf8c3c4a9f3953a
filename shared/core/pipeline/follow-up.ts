import { topics } from '../model/messages.ts';
import { terminalBuildStatuses, terminalTaskStatuses, type Build } from '../model/types.ts';
import { collections } from '../../ports/state.ts';
import type { PipelineDeps } from './deps.ts';
import { publishMessage } from './publish.ts';
import { currentTaskIds } from './sharded-build.ts';

/**
 * Publishes whatever message should follow from a build's stored state: `build-finished` for a verdict not yet
 * reported, `build-requested` for a build with no task yet, `task-ready` for each current task not yet launched, and `tests-finished` for a sharded build whose
 * shards (or retries) are all in. Handlers call it after every state change, and again on every redelivery, so a
 * crash between a commit and a publish is healed by the redelivery; downstream handlers are idempotent, so a
 * message sent twice does nothing the second time.
 */
export async function publishFollowUp(deps: Pick<PipelineDeps, 'state' | 'publisher'>, build: Build): Promise<void> {
  if (terminalBuildStatuses.includes(build.status)) {
    if (build.reportedAt === undefined) {
      await publishMessage(deps.publisher, topics.buildFinished, { v: 1, buildId: build.id });
    }
    return;
  }
  // Back from its module fetch with no task yet: plan it again.
  if (build.sharding === undefined && build.taskId === undefined) {
    await publishMessage(deps.publisher, topics.buildRequested, { v: 1, buildId: build.id, repo: build.repo, commit: build.commit, builder: build.builder });
    return;
  }
  const ids = build.sharding === undefined ? (build.taskId === undefined ? [] : [build.taskId]) : currentTaskIds(build.sharding);
  const tasks = await Promise.all(ids.map((id) => deps.state.get(collections.tasks, id)));
  for (const task of tasks) {
    if (task?.status === 'pending') await publishMessage(deps.publisher, topics.taskReady, { v: 1, taskId: task.id });
  }
  const phase = build.sharding?.phase;
  const allIn = tasks.length > 0 && tasks.every((task) => task !== undefined && terminalTaskStatuses.includes(task.status));
  if ((phase === 'test' || phase === 'retry') && allIn) {
    await publishMessage(deps.publisher, topics.testsFinished, { v: 1, buildId: build.id });
  }
}
