import { PermanentError } from '../errors.ts';
import { buildLinks } from '../model/links.ts';
import type { BuildFinished } from '../model/messages.ts';
import { terminalBuildStatuses, type Build, type BuildStatus, type Verdict } from '../model/types.ts';
import { collections } from '../../ports/state.ts';
import { modeKey, verdictIdOf } from '../trybots/try-modes.ts';
import type { PipelineDeps } from '../pipeline/deps.ts';

/**
 * The `report` function: hands a build's verdict to every reporter, then marks the build reported and records the
 * verdict its tree got (for trybots to reuse), so a redelivered message reports nothing twice. A reporter that fails
 * makes the message retryable; reporters are idempotent, so a crash between reporting and marking costs at most a
 * repeat of the same verdict. Throws PermanentError for an unknown build.
 */
export function createReport(deps: Pick<PipelineDeps, 'catalog' | 'state' | 'reporters' | 'logger' | 'now' | 'options'>) {
  return async function report(message: BuildFinished): Promise<void> {
    const build = await deps.state.get(collections.builds, message.buildId);
    if (build === undefined) throw new PermanentError(`build ${message.buildId} does not exist`);
    if (!terminalBuildStatuses.includes(build.status) || build.reportedAt !== undefined) return;
    const links = buildLinks(build, deps.options.dashboardUrl);
    for (const reporter of deps.reporters) await reporter.report(build, links);
    const verdict = verdictOf(build);
    await deps.state.transaction(async (tx) => {
      const current = await tx.get(collections.builds, build.id);
      if (current !== undefined && current.reportedAt === undefined) {
        tx.set(collections.builds, build.id, { ...current, reportedAt: deps.now() });
        if (verdict !== undefined) tx.set(collections.verdicts, verdict.id, verdict.doc);
      }
    });
  };

  /** The verdict worth reusing: a real pass or failure of a known tree, on a builder still configured. */
  function verdictOf(build: Build): { id: string; doc: Verdict } | undefined {
    const builder = deps.catalog.builders.get(build.builder);
    if (build.tree === undefined || builder === undefined || !reusable.includes(build.status)) return undefined;
    return {
      id: verdictIdOf(build.tree, build.builder, builder, build.mode),
      doc: { tree: build.tree, builder: build.builder, mode: modeKey(build.mode), buildId: build.id, status: build.status, finishedAt: build.finishedAt ?? deps.now() },
    };
  }
}

/** An infra failure says nothing about the tree, so it is never reused. */
const reusable: readonly BuildStatus[] = ['passed', 'failed', 'flaky'];
