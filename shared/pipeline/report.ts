import { PermanentError } from '../errors.ts';
import type { BuildFinished } from '../model/messages.ts';
import { terminalBuildStatuses } from '../model/types.ts';
import { collections } from '../ports/state.ts';
import type { PipelineDeps } from './deps.ts';
import { buildLinks } from '../model/links.ts';

/**
 * The `report` function: hands a build's verdict to every reporter, then marks the build reported, so a
 * redelivered message reports nothing twice. A reporter that fails makes the message retryable; reporters are
 * idempotent, so a crash between reporting and marking costs at most a repeat of the same verdict.
 * Throws PermanentError for an unknown build.
 */
export function createReport(deps: Pick<PipelineDeps, 'state' | 'reporters' | 'logger' | 'now' | 'options'>) {
  return async function report(message: BuildFinished): Promise<void> {
    const build = await deps.state.get(collections.builds, message.buildId);
    if (build === undefined) throw new PermanentError(`build ${message.buildId} does not exist`);
    if (!terminalBuildStatuses.includes(build.status) || build.reportedAt !== undefined) return;
    const links = buildLinks(build, deps.options.dashboardUrl);
    for (const reporter of deps.reporters) await reporter.report(build, links);
    await deps.state.transaction(async (tx) => {
      const current = await tx.get(collections.builds, build.id);
      if (current !== undefined && current.reportedAt === undefined) {
        tx.set(collections.builds, build.id, { ...current, reportedAt: deps.now() });
      }
    });
  };
}
