import type { Build } from '../../shared/model/types.ts';
import { blobKeys, type TaskResult } from '../../shared/model/wire.ts';
import { topics, type TryRequested } from '../../shared/model/messages.ts';
import { publishMessage } from '../../shared/pipeline/publish.ts';
import type { PipelineHarness } from './pipeline-harness.ts';

/** Publishes a trybot request (of `demo`'s pull request 7 unless told) and runs the pipeline until it is quiet. */
export async function requestTry(h: PipelineHarness, fields: Partial<TryRequested> & { commit: string; requester: string }): Promise<void> {
  await publishMessage(h.queue, topics.tryRequested, { v: 1, repo: 'demo', pullRequest: 7, ...fields });
  await h.drain();
}

/** Lands a whole build's result (its one step exiting with `exitCode`) and runs the pipeline to its verdict. */
export async function finishBuild(h: PipelineHarness, build: Build, exitCode: number): Promise<void> {
  const taskId = build.taskId ?? '';
  const result: TaskResult = {
    v: 1,
    taskId,
    status: exitCode === 0 ? 'passed' : 'failed',
    startedAt: 1,
    finishedAt: 2,
    steps: [{ name: 'true', exitCode, durationMs: 1 }],
    log: { bytes: 0, truncated: false, chunks: 0 },
  };
  await h.blobs.put(blobKeys.result(taskId), JSON.stringify(result));
  await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'result' });
  await h.drain();
}
