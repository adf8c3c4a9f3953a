import type { BuildLinks } from '../model/links.ts';
import type { Build, Repo } from '../model/types.ts';
import type { BuilderStatus, GitHub } from '../../ports/github.ts';
import type { Reporter } from '../../ports/reporter.ts';

/**
 * The check's name for a build, beside the commit on GitHub: `hermetic/BUILDER` for post-submit builds and
 * `hermetic-try/BUILDER` for trybots, which build the same commit apart and must not overwrite each other's verdict.
 */
const statusContext = (build: Pick<Build, 'builder' | 'trybot'>): string => `${build.trybot === true ? 'hermetic-try' : 'hermetic'}/${build.builder}`;

/**
 * Reports builds of repos that live on GitHub beside their commit: one status (or check run) per builder, queued,
 * then running, then its verdict, linking to the build's page on the dashboard. Builds of other repos are skipped.
 * A GitHub failure propagates, so the report is retried.
 */
export function createGitHubReporter(github: GitHub, repos: readonly Repo[]): Reporter {
  const show = async (build: Build, links: BuildLinks): Promise<void> => {
    const repo = repos.find((candidate) => candidate.name === build.repo)?.github;
    if (repo === undefined) return;
    await github.setStatus(repo, statusOf(build, links));
  };
  return { name: 'github', report: show, progress: show };
}

/** How GitHub shows a build: its state and one line saying why, linked to its page. */
function statusOf(build: Build, links: BuildLinks): BuilderStatus {
  return { sha: build.commit, context: statusContext(build), state: stateOf(build.status), description: describe(build), targetUrl: links.buildUrl };
}

function stateOf(status: Build['status']): BuilderStatus['state'] {
  switch (status) {
    case 'queued':
      return 'queued';
    case 'running':
      return 'running';
    case 'passed':
    case 'flaky':
      return 'success';
    case 'failed':
      return 'failure';
    case 'infra-failure':
      return 'error';
  }
}

function describe(build: Build): string {
  const tests = build.sharding?.summary;
  const counts = tests === undefined ? '' : ` (${tests.passed} passed, ${tests.failed} failed, ${tests.flaky} flaky of ${tests.units} units)`;
  switch (build.status) {
    case 'queued':
      return 'queued';
    case 'running':
      return 'running';
    case 'flaky':
      return `passed, with flaky tests${counts}${build.reason === undefined ? '' : `; ${build.reason}`}`;
    default:
      return `${build.status}${counts}${build.reason === undefined ? '' : `: ${build.reason}`}`;
  }
}
