import { PermanentError } from '../errors.ts';
import { buildLinks } from '../model/links.ts';
import type { BuildMoved } from '../model/messages.ts';
import { terminalBuildStatuses } from '../model/types.ts';
import { collections } from '../../ports/state.ts';
import type { PipelineDeps } from '../pipeline/deps.ts';

/**
 * The `progress` function: shows a build that moved short of its verdict (queued, running) through the reporters
 * that show progress. A verdict that landed meanwhile is shown again after, so a late progress update never
 * outlives it. Throws PermanentError for an unknown build.
 */
export function createProgress(deps: Pick<PipelineDeps, 'state' | 'reporters' | 'options'>) {
  return async function progress(message: BuildMoved): Promise<void> {
    const build = await deps.state.get(collections.builds, message.buildId);
    if (build === undefined) throw new PermanentError(`build ${message.buildId} does not exist`);
    if (terminalBuildStatuses.includes(build.status)) return;
    for (const reporter of deps.reporters) await reporter.progress?.(build, buildLinks(build, deps.options.dashboardUrl));
    const after = await deps.state.get(collections.builds, build.id);
    if (after === undefined || !terminalBuildStatuses.includes(after.status)) return;
    for (const reporter of deps.reporters) await reporter.report(after, buildLinks(after, deps.options.dashboardUrl));
  };
}
