import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createConsoleReporter, REMEMBERED_VERDICTS } from '../../shared/cli/console.ts';
import { buildLinks } from '../../shared/core/model/links.ts';
import type { Build, Repo } from '../../shared/core/model/types.ts';
import { createGitHubReporter } from '../../shared/core/trybots/github-reporter.ts';
import type { GitHubHarness } from './github.contract.ts';
import { memoryGitHubHarness, serverGitHubHarness } from '../helpers/github-harness.ts';
import { reporterContract, type ReporterHarness, type ShownBuild } from './reporter.contract.ts';

const repo = (name: string, github?: Repo['github']): Repo => ({ name, url: `/nowhere/${name}`, branches: ['main'], builders: ['linux'], backfill: 1, ...(github === undefined ? {} : { github }) });

/** The GitHub reporter over one GitHub contract world: what it shows is what that world shows beside the commit. */
async function overGitHub(world: GitHubHarness): Promise<ReporterHarness> {
  const commit = await world.commit();
  return {
    // "plain" is configured without GitHub; "unknown" is not configured at all.
    reporter: createGitHubReporter(world.github, [repo('demo', world.repo), repo('plain')]),
    repo: 'demo',
    commit,
    skipped: ['plain', 'unknown'],
    shown: () => world.shown(commit).map((status) => ({ place: status.context, state: status.state, text: status.description, link: status.targetUrl })),
    kept: () => world.kept(),
    cleanup: () => world.cleanup(),
  };
}

reporterContract('GitHub, over the memory fake', async () => overGitHub(await memoryGitHubHarness()));
reporterContract('GitHub, over the REST API under a token', async () => overGitHub(await serverGitHubHarness('token')));
reporterContract('GitHub, over the REST API as a GitHub App', async () => overGitHub(await serverGitHubHarness('app')));

reporterContract('console', async () => {
  const lines: string[] = [];
  const commit = 'c0ffee'.repeat(6) + 'c0ff';
  return {
    reporter: createConsoleReporter((line) => lines.push(line)),
    repo: 'demo',
    commit,
    skipped: [],
    shown: () => consoleShown(lines, commit),
    kept: () => lines,
    cleanup: async () => undefined,
  };
});

/** The console's lines of builds of `commit` ("✓ passed  demo c0ffeec0ffee linux  URL"), the latest per builder. */
function consoleShown(lines: readonly string[], commit: string): ShownBuild[] {
  const latest = new Map<string, ShownBuild>();
  for (const line of lines) {
    const [, status = '', , short = '', builder = ''] = line.split(/\s+/);
    if (!commit.startsWith(short)) continue;
    const state = status === 'passed' || status === 'flaky' ? 'success' : 'failure';
    latest.set(builder, { place: builder, state, text: line, link: line.split(/\s+/).at(-1) });
  }
  return [...latest.values()];
}

describe('console reporter, beyond the contract', () => {
  it('forgets the oldest verdicts past the ones it remembers, so a long run does not grow without end', async () => {
    const lines: string[] = [];
    const reporter = createConsoleReporter((line) => lines.push(line));
    const verdict = (n: number): Build => ({ id: `b${n}`, repo: 'demo', commit: 'c'.repeat(40), builder: 'linux', seq: n, status: 'passed', createdAt: 1, attempts: 1 });
    for (let n = 0; n <= REMEMBERED_VERDICTS; n++) await reporter.report(verdict(n), buildLinks(verdict(n), 'https://ci.example'));
    await reporter.report(verdict(1), buildLinks(verdict(1), 'https://ci.example'));
    assert.equal(lines.length, REMEMBERED_VERDICTS + 1, 'b1 is still remembered');
    await reporter.report(verdict(0), buildLinks(verdict(0), 'https://ci.example'));
    assert.equal(lines.length, REMEMBERED_VERDICTS + 2, 'b0 was forgotten, so it prints again');
  });
});
