import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { buildLinks } from '../../shared/core/model/links.ts';
import type { Build, BuildStatus } from '../../shared/core/model/types.ts';
import type { Reporter } from '../../shared/ports/reporter.ts';

/** One build as a reporter shows it: pending (queued or running) or its verdict, in words, with its link. */
export interface ShownBuild {
  /** Where it is shown: a status's context, a builder's line. */
  place: string;
  state: 'pending' | 'success' | 'failure';
  text: string;
  link: string | undefined;
}

/** What the suite needs from a reporter's world: the reporter, a repo it reports, and what it shows. */
export interface ReporterHarness {
  reporter: Reporter;
  /** A configured repo whose builds this reporter shows. */
  repo: string;
  /** A commit of `repo` (one GitHub knows, where that matters). */
  commit: string;
  /** Repos whose builds the reporter must skip, showing nothing and throwing nothing; empty for one that shows every repo's. */
  skipped: string[];
  /** What it shows now of builds of `commit`: one entry per place, the latest, in the order places first appeared. */
  shown(): ShownBuild[];
  /** Everything it has written (statuses, check runs, lines), history included: a repeat must leave it deep-equal. */
  kept(): readonly unknown[];
  cleanup(): Promise<void>;
}

const DASHBOARD = 'https://ci.example';

/** Every Reporter must pass this suite unchanged. `make` gives a fresh world for each test. */
export function reporterContract(implementation: string, make: () => Promise<ReporterHarness>): void {
  describe(`Reporter contract: ${implementation}`, { timeout: 120_000 }, () => {
    let h: ReporterHarness;
    beforeEach(async () => {
      h = await make();
    });
    afterEach(async () => {
      await h.cleanup();
    });

    const build = (builder: string, status: BuildStatus, fields: Partial<Build> = {}): Build => ({
      id: `${h.repo}-${h.commit.slice(0, 12)}-${builder}`,
      repo: h.repo,
      commit: h.commit,
      builder,
      seq: 1,
      status,
      createdAt: 1_700_000_000_000,
      attempts: 1,
      taskId: `task-${builder}`,
      ...fields,
    });
    const links = (of: Build) => buildLinks(of, DASHBOARD);

    it('reporting a verdict again, as after a crash, leaves what was shown as it was', async () => {
      const passed = build('linux', 'passed', { finishedAt: 1_700_000_060_000 });
      await h.reporter.report(passed, links(passed));
      const [shown, ...more] = h.shown();
      assert.equal(more.length, 0, 'one build, shown once');
      assert.equal(shown?.state, 'success');
      assert.ok([links(passed).buildUrl, links(passed).logUrl].includes(shown?.link), `linked to the build or its log: ${shown?.link}`);
      assert.equal(h.kept().length, 1, 'one thing written, not two');
      const before = structuredClone(h.kept());
      await h.reporter.report(structuredClone(passed), links(passed));
      assert.deepEqual(h.kept(), before);
    });

    it('shows each verdict as a success or a failure, each build in its own place', async () => {
      const verdicts: Array<[string, BuildStatus, ShownBuild['state']]> = [
        ['linux', 'passed', 'success'],
        ['windows', 'failed', 'failure'],
        ['darwin', 'flaky', 'success'],
        ['plan9', 'infra-failure', 'failure'],
      ];
      for (const [builder, status] of verdicts) {
        const done = build(builder, status, { reason: `${status} for a reason` });
        await h.reporter.report(done, links(done));
      }
      const shown = h.shown();
      assert.equal(shown.length, verdicts.length, JSON.stringify(shown));
      assert.deepEqual(shown.map((entry) => entry.state), verdicts.map(([, , state]) => state));
      assert.equal(new Set(shown.map((entry) => entry.place)).size, verdicts.length);
    });

    it('shows progress as queued then running, idempotently, and the verdict then replaces it', async (t) => {
      const progress = h.reporter.progress?.bind(h.reporter);
      if (progress === undefined) return t.skip(`the ${h.reporter.name} reporter shows verdicts only`);
      const queued = build('linux', 'queued');
      await progress(queued, links(queued));
      assertPending(h.shown(), /queued/);
      const before = structuredClone(h.kept());
      await progress(queued, links(queued));
      assert.deepEqual(h.kept(), before, 'the same progress again changes nothing');

      const running = build('linux', 'running', { startedAt: 1_700_000_010_000, attempts: 1 });
      await progress(running, links(running));
      assertPending(h.shown(), /running/);

      const failed = build('linux', 'failed', { finishedAt: 1_700_000_060_000, reason: 'exit status 1' });
      await h.reporter.report(failed, links(failed));
      const shown = h.shown();
      assert.equal(shown.length, 1, 'replaced, not shown beside');
      assert.equal(shown[0]?.state, 'failure');
      assert.match(shown[0]?.text ?? '', /exit status 1/);
    });

    it('skips builds of repos it does not report to, without failing', async (t) => {
      if (h.skipped.length === 0) return t.skip(`the ${h.reporter.name} reporter shows every repo's builds`);
      const before = structuredClone(h.kept());
      for (const repo of h.skipped) {
        const queued = build('linux', 'queued', { repo, id: `${repo}-linux` });
        await h.reporter.progress?.(queued, links(queued));
        const passed = { ...queued, status: 'passed' as const };
        await h.reporter.report(passed, links(passed));
      }
      assert.deepEqual(h.kept(), before);
    });
  });
}

/** One build shown, pending, saying `words`. */
function assertPending(shown: ShownBuild[], words: RegExp): void {
  assert.equal(shown.length, 1, JSON.stringify(shown));
  assert.equal(shown[0]?.state, 'pending');
  assert.match(shown[0]?.text ?? '', words);
}
