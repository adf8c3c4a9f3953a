import { topics } from '../model/messages.ts';
import type { PipelineDeps } from './deps.ts';
import { publishMessage } from './publish.ts';

/** Publishes `build-moved` for each build (queued, or started running) when a reporter shows progress; else nothing. */
export async function announceMoves(deps: Pick<PipelineDeps, 'reporters' | 'publisher'>, buildIds: readonly string[]): Promise<void> {
  if (!deps.reporters.some((reporter) => reporter.progress !== undefined)) return;
  for (const buildId of buildIds) await publishMessage(deps.publisher, topics.buildMoved, { v: 1, buildId });
}
