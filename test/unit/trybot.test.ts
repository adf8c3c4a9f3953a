import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../shared/core/config/config.ts';
import { PermanentError } from '../../shared/core/errors.ts';
import { modeProblem, stepsForMode } from '../../shared/core/trybots/try-modes.ts';
import { buildId } from '../../shared/core/model/ids.ts';
import { decode, topics, TryRequested } from '../../shared/core/model/messages.ts';
import type { TryMode, TryRun } from '../../shared/core/model/types.ts';
import { publishMessage } from '../../shared/core/pipeline/publish.ts';
import { collections } from '../../shared/ports/state.ts';
import { createMemoryGitHub, type MemoryGitHub } from '../fakes/memory-github.ts';
import { change, finishBuild, requestTry, trybotBuilds } from '../helpers/pipeline-steps.ts';
import { createPipelineHarness, type PipelineHarness } from '../helpers/pipeline-harness.ts';

const policy = { trusted: { users: ['rsc'], orgs: ['golang'], teams: ['acme/release'] }, trustCacheSeconds: 60, maxWaitingPerRequester: 3 };

async function harness(): Promise<{ h: PipelineHarness; github: MemoryGitHub }> {
  const github = createMemoryGitHub();
  github.orgs.set('golang', new Set(['gopher']));
  github.teams.set('acme/release', new Set(['releaser']));
  // The pull request the requests come from (7 unless told), so comments on it land.
  for (const number of [7, 8, 9]) github.open(number, { sha: 'e'.repeat(40), ref: `change-${number}` }, 'f'.repeat(40));
  return { h: await createPipelineHarness({ trybots: policy, github }), github };
}

const tries = (h: PipelineHarness): Promise<TryRun[]> => h.state.query(collections.trybots);

describe('trybots: trust', () => {
  it('builds a trusted request on the repo defaults as trybot builds and reports queued, running, then the verdict to GitHub', async () => {
    const { h, github } = await harness();
    const commit = change(h);
    await requestTry(h, { commit, requester: 'rsc' });
    const [run] = await tries(h);
    assert.equal(run?.status, 'accepted');
    assert.equal(run?.acceptedBy, 'rsc');
    const builds = await trybotBuilds(h);
    assert.deepEqual(builds.map((build) => build.builder), ['ok']);
    assert.equal(builds[0]?.commit, commit);
    assert.notEqual(builds[0]?.id, buildId('demo', commit, 'ok'), 'apart from a post-submit build of the same commit');
    await finishBuild(h, builds[0]!, 1);
    // Each progress message shows the build as it is when delivered, so queued may already be running; never backwards.
    const states = github.statuses.filter((status) => status.sha === commit).map((status) => status.state);
    const rank = (state: string) => ['queued', 'running'].indexOf(state) + 1 || 3;
    assert.deepEqual([...states].sort((a, b) => rank(a) - rank(b)), states, `in order: ${states.join(', ')}`);
    assert.ok(states.includes('running'));
    assert.equal(states.at(-1), 'failure');
    const last = github.statuses.at(-1);
    assert.equal(last?.context, 'hermetic-try/ok');
    assert.equal(last?.repo, 'acme/demo');
    assert.match(last?.targetUrl ?? '', new RegExp(`/build/${builds[0]?.id}$`));
  });

  it('reports a trybot and a post-submit build of one commit under their own names, so neither overwrites the other', async () => {
    const { h, github } = await harness();
    const commit = h.source.push('demo', 'main');
    await h.poll();
    await h.drain();
    await requestTry(h, { commit, requester: 'rsc' });
    const postSubmit = await h.state.get(collections.builds, buildId('demo', commit, 'ok'));
    const [trybot] = await trybotBuilds(h);
    assert.ok(postSubmit && trybot);
    await finishBuild(h, postSubmit, 0);
    await finishBuild(h, trybot, 1);
    const lastState = (context: string) => github.statuses.filter((status) => status.sha === commit && status.context === context).at(-1)?.state;
    assert.equal(lastState('hermetic/ok'), 'success');
    assert.equal(lastState('hermetic-try/ok'), 'failure');
  });

  it('records an untrusted request as waiting, fetching and building nothing, and says so on the pull request once', async () => {
    const { h, github } = await harness();
    const commit = change(h);
    let fetched = 0;
    const fetchCommit = h.source.fetchCommit.bind(h.source);
    h.source.fetchCommit = async (...args) => {
      fetched++;
      return fetchCommit(...args);
    };
    await requestTry(h, { commit, requester: 'mallory' });
    await requestTry(h, { commit, requester: 'mallory' });
    const all = await tries(h);
    assert.equal(all.length, 1, 'one record however often it is asked');
    assert.equal(all[0]?.status, 'waiting-approval');
    assert.deepEqual(all[0]?.requesters, ['mallory']);
    assert.equal((await trybotBuilds(h)).length, 0);
    assert.equal(h.compute.started.length, 0);
    assert.equal(fetched, 0, 'nothing of an untrusted change is fetched');
    assert.equal(github.comments.length, 1);
    assert.match(github.comments[0]?.body ?? '', /waiting for approval/);
  });

  it("a trusted person's /try approves the waiting request for that exact commit only; the next push waits again", async () => {
    const { h } = await harness();
    const first = change(h);
    await requestTry(h, { commit: first, requester: 'mallory', builders: ['ok'] });
    await requestTry(h, { commit: first, requester: 'gopher' });
    const approved = (await tries(h)).find((run) => run.requestedBy === 'mallory');
    assert.equal(approved?.status, 'accepted');
    assert.equal(approved?.acceptedBy, 'gopher');
    const second = change(h);
    await requestTry(h, { commit: second, requester: 'mallory', builders: ['ok'] });
    const next = (await tries(h)).find((run) => run.commit === second);
    assert.equal(next?.status, 'waiting-approval', 'an approval covers one commit');
    assert.deepEqual((await trybotBuilds(h)).map((build) => build.commit), [first], 'only the approved commit is built');
  });

  it('trusts members of configured organisations and teams, asking GitHub once per cache period', async () => {
    const { h, github } = await harness();
    await requestTry(h, { commit: change(h), requester: 'releaser' });
    await requestTry(h, { commit: change(h), requester: 'releaser' });
    assert.deepEqual(github.asked, ['golang:releaser', 'acme/release:releaser'], 'the second request used the cache');
    h.advance(61_000);
    await requestTry(h, { commit: change(h), requester: 'releaser' });
    assert.equal(github.asked.length, 4, 'asked again once the cache expired');
    assert.ok((await tries(h)).every((run) => run.status === 'accepted' && run.acceptedBy === 'releaser'));
  });

  it('compares logins as GitHub does: any case is the same person, a lookalike is refused at the edge', async () => {
    const { h } = await harness();
    await requestTry(h, { commit: change(h), requester: 'RSC' });
    await requestTry(h, { commit: change(h), requester: 'rsc2' });
    const statuses = (await tries(h)).map((run) => `${run.requestedBy}:${run.status}`).sort();
    assert.deepEqual(statuses, ['rsc2:waiting-approval', 'rsc:accepted']);
    for (const lookalike of ['rs\u0441', 'rsc-', ' rsc', 'rsc\u200b']) {
      assert.throws(
        () => decode(TryRequested, JSON.stringify({ v: 1, repo: 'demo', commit: 'a'.repeat(40), requester: lookalike }), 'try request'),
        (error: unknown) => error instanceof PermanentError && /requester: expected a GitHub login/.test(error.message),
        JSON.stringify(lookalike),
      );
    }
  });

  it('drops a flood from one untrusted account past its waiting limit: no records beyond it, no builds, no comments', async () => {
    const { h, github } = await harness();
    for (let i = 0; i < 40; i++) await publishMessage(h.queue, topics.tryRequested, { v: 1, repo: 'demo', pullRequest: 7, commit: change(h), requester: 'flooder' });
    await h.drain();
    assert.equal((await tries(h)).length, 3);
    assert.equal((await trybotBuilds(h)).length, 0);
    assert.equal(github.comments.length, 3);
    assert.deepEqual(await h.queue.list(), [], "nothing dead-lettered");
  });
});

describe('trybots: builders, modes and reuse', () => {
  it('refuses unknown builder names, listing the ones that exist, and tells a trusted requester', async () => {
    const { h, github } = await harness();
    const commit = change(h);
    await publishMessage(h.queue, topics.tryRequested, { v: 1, repo: 'demo', pullRequest: 7, commit, requester: 'rsc', builders: ['ok', 'linux-amd64'] });
    await h.drain();
    const [dead] = await h.queue.list();
    assert.match(dead?.reason ?? '', /unknown builder "linux-amd64"; expected one of: fb, gomod, mod, mod-noretry, mod-once, no-spot, ok, tree, vm/);
    assert.match(github.comments[0]?.body ?? '', /unknown builder "linux-amd64"/);
    assert.equal((await tries(h)).length, 0);
  });

  it('adds the builders a path rule names when the change touches matching files', async () => {
    const { h } = await harness();
    const base = h.source.push('demo', 'main');
    const docs = h.source.commit('demo', 'refs/pull/7/head', { 'docs/a.md': 'a\n' });
    await requestTry(h, { commit: docs, requester: 'rsc', base });
    const code = h.source.commit('demo', 'refs/pull/8/head', { 'src/x.go': 'package x\n' });
    await requestTry(h, { commit: code, requester: 'rsc', base, pullRequest: 8 });
    const byCommit = (commit: string) => trybotBuilds(h).then((builds) => builds.filter((build) => build.commit === commit).map((build) => build.builder).sort());
    assert.deepEqual(await byCommit(docs), ['ok']);
    assert.deepEqual(await byCommit(code), ['mod', 'ok']);
    const sharded = (await trybotBuilds(h)).find((build) => build.builder === 'mod');
    assert.equal(sharded?.trybot, true, 'a sharded trybot build, which plans with its trybot shard count');
  });

  it('reuses the verdict a builder already gave the same tree, and says so beside the new commit', async () => {
    const { h, github } = await harness();
    const first = change(h, { 'a.txt': 'same\n' });
    await requestTry(h, { commit: first, requester: 'rsc' });
    const [built] = await trybotBuilds(h);
    await finishBuild(h, built!, 0);
    // Another commit with exactly the same files: the same tree.
    const again = h.source.commit('demo', 'refs/pull/9/head', { 'a.txt': 'same\n' });
    const tree = (await h.source.fetchCommit(h.config.repos[0]!, again)).tree;
    assert.equal(tree, built?.tree);
    await requestTry(h, { commit: again, requester: 'rsc', pullRequest: 9 });
    const run = (await tries(h)).find((entry) => entry.commit === again);
    assert.deepEqual(run?.builds, [{ builder: 'ok', buildId: built?.id, reused: true }]);
    assert.equal((await trybotBuilds(h)).length, 1, 'nothing built again');
    const shown = github.statuses.filter((status) => status.sha === again);
    assert.equal(shown.length, 1);
    assert.equal(shown[0]?.state, 'success');
    assert.match(shown[0]?.description ?? '', /reused: the same tree already has this verdict/);
  });

  it('runs make only, or only named tests, on a sharded builder; refuses a mode a one-command builder cannot run', async () => {
    const { h } = await harness();
    const commit = change(h);
    await requestTry(h, { commit, requester: 'rsc', builders: ['mod'], mode: { kind: 'make' } });
    const [made] = await trybotBuilds(h);
    assert.deepEqual(made?.mode, { kind: 'make' });
    assert.ok(made?.sharding?.makeTaskId);
    await publishMessage(h.queue, topics.tryRequested, { v: 1, repo: 'demo', commit, requester: 'rsc', builders: ['ok'], mode: { kind: 'make' } });
    await h.drain();
    const [dead] = await h.queue.list();
    assert.match(dead?.reason ?? '', /builder "ok" runs one command/);
  });
});

describe('trybots: hostile refs', () => {
  it('refuses ref names built to inject options or commands before anything runs', () => {
    for (const ref of ['--upload-pack=touch /tmp/pwned', 'main;id', '$(id)', '`id`', 'refs/pull/1/head\nx', '../../etc', 'a b']) {
      assert.throws(
        () => decode(TryRequested, JSON.stringify({ v: 1, repo: 'demo', commit: 'a'.repeat(40), requester: 'rsc', ref }), 'try request'),
        (error: unknown) => error instanceof PermanentError && /ref: expected a ref name/.test(error.message),
        JSON.stringify(ref),
      );
    }
  });
});

describe('trybots: a whole build in a mode', () => {
  const { builders } = parseConfig({ builders: { mod: { type: 'go-module', packages: ['./...'] }, cmd: { type: 'command', command: 'make test' } } }, 'test.json');
  const steps = (mode: TryMode | undefined) => stepsForMode(builders.get('mod')!.steps, mode).map((step) => step.argv.join(' '));

  it('launches whole go-module builds with specs the worker accepts, in full and make only', async () => {
    const { h } = await harness();
    await requestTry(h, { commit: change(h), requester: 'rsc', builders: ['gomod'] });
    await requestTry(h, { commit: change(h), requester: 'rsc', builders: ['gomod'], mode: { kind: 'make' } });
    for (const build of await trybotBuilds(h)) assert.equal(build.status, 'running', build.reason);
    const launched = h.compute.started.map((start) => start.spec.steps.map((step) => step.argv.join(' ')));
    assert.deepEqual(launched, [['go vet ./...', 'go build ./...', 'go test ./...'], ['go vet ./...', 'go build ./...']]);
  });

  it('runs vet and build for make only, and go test on the named packages for named tests', () => {
    assert.deepEqual(steps(undefined), ['go vet ./...', 'go build ./...', 'go test ./...']);
    assert.ok(stepsForMode(builders.get('mod')!.steps, undefined).every((step) => !('test' in step)), "the pipeline's marker stays out of the worker's steps");
    assert.deepEqual(steps({ kind: 'make' }), ['go vet ./...', 'go build ./...']);
    assert.deepEqual(steps({ kind: 'tests', tests: ['./net/http', './os'] }), ['go vet ./...', 'go build ./...', 'go test ./net/http ./os']);
    assert.equal(modeProblem(builders.get('mod')!, { kind: 'make' }), undefined);
    assert.match(modeProblem(builders.get('cmd')!, { kind: 'tests', tests: ['x'] }) ?? '', /runs one command/);
  });
});
