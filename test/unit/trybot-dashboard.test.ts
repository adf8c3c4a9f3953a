import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BuildSummary } from '../../shared/core/dashboard/dashboard.ts';
import { buildId } from '../../shared/core/model/ids.ts';
import type { TryRun } from '../../shared/core/model/types.ts';
import { collections } from '../../shared/ports/state.ts';
import { dashboardBody, fetchDashboard } from '../helpers/dashboard-client.ts';
import { createPipelineHarness, type PipelineHarness } from '../helpers/pipeline-harness.ts';
import { change, finishBuild, requestTry, trybotBuilds } from '../helpers/pipeline-steps.ts';

const policy = { trusted: { users: ['rsc'] }, trustCacheSeconds: 60, maxWaitingPerRequester: 3 };

type TryJson = TryRun & { pullRequestUrl?: string; builds: Array<TryRun['builds'][number] & { build?: BuildSummary }> };

/** The dashboard's answer at `path`, which must be 200 of `type`. */
const get = (h: PipelineHarness, path: string, type = 'text/html; charset=utf-8'): Promise<string> => dashboardBody(h, path, type);

const json = async <T>(h: PipelineHarness, path: string): Promise<T> => JSON.parse(await get(h, path, 'application/json')) as T;
/** The page's table row that shows `run`. */
const rowOf = (page: string, run: TryRun): string => page.split('<tr').find((row) => row.startsWith(` id="try-${run.id}"`)) ?? '';

/**
 * Five requests a minute apart, oldest first: one accepted and built, one accepted on the verdict the first one's
 * tree already has, one waiting for approval, one whose approval was refused (a one-command builder cannot run make
 * alone), and the trusted request that approved it.
 */
async function fiveRequests(h: PipelineHarness) {
  const built = change(h, { 'a.txt': 'same\n' });
  await requestTry(h, { commit: built, requester: 'rsc' });
  const [build] = await trybotBuilds(h);
  assert.ok(build);
  await finishBuild(h, build, 0);
  h.advance(60_000);
  const reused = h.source.commit('demo', 'refs/pull/8/head', { 'a.txt': 'same\n' });
  await requestTry(h, { commit: reused, requester: 'rsc', pullRequest: 8 });
  h.advance(60_000);
  const waiting = change(h, { 'b.txt': 'b\n' });
  await requestTry(h, { commit: waiting, requester: 'mallory', mode: { kind: 'tests', tests: ['TestA', 'go_test:net/http'] } });
  h.advance(60_000);
  const rejected = change(h, { 'c.txt': 'c\n' });
  await requestTry(h, { commit: rejected, requester: 'mallory', builders: ['ok'], mode: { kind: 'make' } });
  h.advance(60_000);
  await requestTry(h, { commit: rejected, requester: 'rsc' });
  const runs = await h.state.query(collections.trybots);
  const find = (commit: string, requester = 'rsc') => runs.find((run) => run.commit === commit && run.requestedBy === requester)!;
  return {
    build,
    built: find(built),
    reused: find(reused),
    waiting: find(waiting, 'mallory'),
    rejected: find(rejected, 'mallory'),
    approval: find(rejected),
  };
}

describe('dashboard: trybots', () => {
  it('lists requests newest first: pull request linked, mode, who asked, status, and each build linked', async () => {
    const h = await createPipelineHarness({ trybots: policy });
    const { build, built, reused, waiting, rejected, approval } = await fiveRequests(h);
    const page = await get(h, '/trybots');
    const order = [approval, rejected, waiting, reused, built].map((run) => page.indexOf(`<tr id="try-${run.id}"`));
    assert.ok(order.every((at, index) => at > 0 && (index === 0 || at > (order[index - 1] ?? 0))), `newest first: ${order.join(', ')}`);

    const first = rowOf(page, built);
    assert.match(first, /<td>demo<\/td>/);
    assert.match(first, /<a href="https:\/\/github\.com\/acme\/demo\/pull\/7">#7<\/a>/);
    assert.match(first, /<td>full<\/td>/);
    assert.match(first, /<td>rsc<\/td>/);
    assert.match(first, /accepted by rsc/);
    assert.match(first, new RegExp(`ok: <a class="s-passed" href="/build/${build.id}">passed</a></div>`), 'its own build, not reused');

    const second = rowOf(page, reused);
    assert.match(second, /pull\/8">#8</);
    assert.match(second, new RegExp(`href="/build/${build.id}">passed</a> <span class="muted">reused: the verdict of build ${build.id.slice(0, 8)} of ${built.commit.slice(0, 12)}`));

    const third = rowOf(page, waiting);
    assert.match(third, /^ id="[^"]+" class="waiting"/, 'a waiting request stands out');
    assert.match(third, /<td>tests: TestA, go_test:net\/http<\/td>/);
    assert.match(third, /<strong>waiting for approval<\/strong><div>waiting for a trusted person to approve this commit: mallory is not on the allowlist<\/div>/);
    assert.match(third, /a trusted person comments <code>\/try<\/code> on the pull request, or runs <code>hermetic try<\/code> as themselves/);
    assert.match(page, /<strong>1 waiting for approval<\/strong>/);

    const fourth = rowOf(page, rejected);
    assert.doesNotMatch(fourth, /class="waiting"/);
    assert.match(fourth, /<td>make<\/td>/);
    assert.match(fourth, /rejected: [^<]*make/);
  });

  it('filters by repo and limits like the grid', async () => {
    const h = await createPipelineHarness({ trybots: policy });
    const { approval, rejected } = await fiveRequests(h);
    const newest = await get(h, '/trybots?limit=2');
    assert.equal(newest.split('<tr').length - 2, 2, 'two rows under the header');
    assert.ok(rowOf(newest, approval) && rowOf(newest, rejected));
    assert.equal((await json<{ trybots: TryJson[] }>(h, '/api/trybots?repo=demo&limit=3')).trybots.length, 3);
    assert.deepEqual((await json<{ trybots: TryJson[] }>(h, '/api/trybots?repo=elsewhere')).trybots, []);
    assert.match(await get(h, '/trybots?repo=elsewhere'), /No trybot requests yet/);
  });

  it('serves every request as JSON with its builds\' summaries, and one by ID; 404 for an unknown ID', async () => {
    const h = await createPipelineHarness({ trybots: policy });
    const { build, built, reused, waiting } = await fiveRequests(h);
    const { trybots } = await json<{ trybots: TryJson[] }>(h, '/api/trybots');
    assert.deepEqual(trybots.map((run) => run.status), ['accepted', 'rejected', 'waiting-approval', 'accepted', 'accepted']);
    const one = await json<{ trybot: TryJson }>(h, `/api/trybots/${reused.id}`);
    assert.equal(one.trybot.pullRequestUrl, 'https://github.com/acme/demo/pull/8');
    assert.equal(one.trybot.acceptedBy, 'rsc');
    const [entry] = one.trybot.builds;
    assert.equal(entry?.reused, true);
    assert.equal(entry?.build?.id, build.id);
    assert.equal(entry?.build?.commit, built.commit, 'the reused verdict names the build and commit that gave it');
    assert.equal(entry?.build?.status, 'passed');
    assert.match(entry?.build?.buildUrl ?? '', new RegExp(`/build/${build.id}$`));
    assert.deepEqual((await json<{ trybot: TryJson }>(h, `/api/trybots/${waiting.id}`)).trybot.builds, []);
    const unknown = await fetchDashboard(h, `/api/trybots/${'0'.repeat(24)}`);
    assert.equal(unknown.status, 404);
    assert.deepEqual(JSON.parse(unknown.body), { error: 'no such trybot request' });
    assert.equal((await fetchDashboard(h, '/api/trybots/not-an-id')).status, 404);
  });

  it('escapes what people supply: requesters, reasons and test names', async () => {
    const h = await createPipelineHarness({ trybots: policy });
    // The message edge refuses such logins and names; a record written by anything else must still render inert.
    const hostile = '<script>alert(1)</script>';
    const run: TryRun = {
      id: 'f'.repeat(24),
      repo: 'demo',
      commit: 'e'.repeat(40),
      pullRequest: 9,
      mode: { kind: 'tests', tests: [`${hostile}test`] },
      requestedBy: 'mallory',
      requesters: ['mallory', `${hostile}who`],
      status: 'waiting-approval',
      reason: `${hostile}why "quoted" & 'single'`,
      builds: [],
      createdAt: 1,
      updatedAt: 1,
    };
    await h.state.transaction(async (tx) => tx.set(collections.trybots, run.id, run));
    const page = await get(h, '/trybots');
    assert.doesNotMatch(page, /<script>/);
    assert.match(page, /&#60;script&#62;alert\(1\)&#60;\/script&#62;test/);
    assert.match(page, /mallory, &#60;script&#62;alert\(1\)&#60;\/script&#62;who/);
    assert.match(page, /&#60;script&#62;alert\(1\)&#60;\/script&#62;why &#34;quoted&#34; &#38; &#39;single&#39;/);
  });

  it('shows a trybot build as one, with its mode', async () => {
    const h = await createPipelineHarness({ trybots: policy });
    const commit = change(h, { 'src/x.go': 'package x\n' });
    await requestTry(h, { commit, requester: 'rsc', builders: ['mod'], mode: { kind: 'tests', tests: ['example.com/m/x'] } });
    const [build] = await trybotBuilds(h);
    assert.ok(build);
    assert.match(await get(h, `/build/${build.id}`), /<p>trybot · mode: tests: example\.com\/m\/x<\/p>/);
    const postSubmit = await h.request('ok');
    assert.doesNotMatch(await get(h, `/build/${postSubmit}`), /trybot ·/);
  });
});

describe('dashboard: the grid', () => {
  it('keeps a commit\'s post-submit cells when the same commit is also tried, and adds no column for a trybot\'s builder', async () => {
    const h = await createPipelineHarness({ trybots: policy });
    const commit = h.source.push('demo', 'main');
    await h.poll();
    await h.drain();
    await requestTry(h, { commit, requester: 'rsc' });
    await requestTry(h, { commit, requester: 'rsc', builders: ['mod'], mode: { kind: 'make' } });
    assert.deepEqual((await trybotBuilds(h)).map((build) => build.builder).sort(), ['mod', 'ok'], 'the commit has trybot builds beside its post-submit one');
    const { grids } = await json<{ grids: Array<{ builders: string[]; commits: Array<{ hash: string; builds: Record<string, { id: string }> }> }> }>(h, '/api/grid');
    assert.deepEqual(grids[0]?.builders, ['ok']);
    const row = grids[0]?.commits.find((entry) => entry.hash === commit);
    assert.deepEqual(Object.keys(row?.builds ?? {}), ['ok']);
    assert.equal(row?.builds.ok?.id, buildId('demo', commit, 'ok'));
    assert.match(await get(h, '/'), /<a href="\/trybots">trybots<\/a>/);
  });
});
