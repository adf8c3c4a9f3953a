import assert from 'node:assert/strict';
import { buildId } from '../../shared/core/model/ids.ts';
import type { Build } from '../../shared/core/model/types.ts';
import { blobKeys, type TaskResult } from '../../shared/core/model/wire.ts';
import { topics, type TryRequested } from '../../shared/core/model/messages.ts';
import { publishMessage } from '../../shared/core/pipeline/publish.ts';
import { collections } from '../../shared/ports/state.ts';
import type { PipelineHarness } from './pipeline-harness.ts';

/** Pushes a commit to `demo`'s main, polls, and runs the pipeline until the `ok` build's first worker is started. */
export async function launchOne(h: PipelineHarness): Promise<{ commit: string; buildId: string; taskId: string }> {
  const commit = h.source.push('demo', 'main');
  await h.poll();
  await h.drain();
  const id = buildId('demo', commit, 'ok');
  const build = await h.state.get(collections.builds, id);
  assert.ok(build?.taskId, 'the build has a task');
  return { commit, buildId: id, taskId: build.taskId };
}

/** A worker's result for `taskId`: one step exiting with `exitCode` (0 if it passed, else 1, unless told). */
export function result(taskId: string, status: TaskResult['status'], exitCode = status === 'passed' ? 0 : 1): TaskResult {
  return {
    v: 1,
    taskId,
    status,
    startedAt: 1,
    finishedAt: 2,
    steps: [{ name: 'true', exitCode, durationMs: 1 }],
    log: { bytes: 10, truncated: false, chunks: 1 },
    ...(status === 'error' ? { error: 'could not fetch the source' } : {}),
  };
}

/** Lands `taskId`'s result, announces it, and runs the pipeline until it is quiet. */
export async function finish(h: PipelineHarness, taskId: string, status: TaskResult['status'], exitCode?: number): Promise<void> {
  await land(h, result(taskId, status, exitCode));
}

/** Lands a worker's result as it wrote it, announces it, and runs the pipeline until it is quiet. */
export async function land(h: PipelineHarness, landed: TaskResult): Promise<void> {
  await h.blobs.put(blobKeys.result(landed.taskId), JSON.stringify(landed));
  await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: landed.taskId, cause: 'result' });
  await h.drain();
}

/** The harness's trybot builds. */
export async function trybotBuilds(h: PipelineHarness): Promise<Build[]> {
  return (await h.state.query(collections.builds)).filter((build) => build.trybot === true);
}

/** A pull request's head: a commit on a branch nobody watches (a README change of its own unless told). */
export function change(h: PipelineHarness, files: Record<string, string> = { 'README.md': `change ${Math.random()}\n` }): string {
  return h.source.commit('demo', 'refs/pull/7/head', files);
}

/** Publishes a trybot request (of `demo`'s pull request 7 unless told) and runs the pipeline until it is quiet. */
export async function requestTry(h: PipelineHarness, fields: Partial<TryRequested> & { commit: string; requester: string }): Promise<void> {
  await publishMessage(h.queue, topics.tryRequested, { v: 1, repo: 'demo', pullRequest: 7, ...fields });
  await h.drain();
}

/** Lands a whole build's result (its one step exiting with `exitCode`) and runs the pipeline to its verdict. */
export async function finishBuild(h: PipelineHarness, build: Build, exitCode: number): Promise<void> {
  await finish(h, build.taskId ?? '', exitCode === 0 ? 'passed' : 'failed', exitCode);
}
