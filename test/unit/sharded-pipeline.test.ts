import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { durationDocId } from '../../shared/core/model/ids.ts';
import { topics } from '../../shared/core/model/messages.ts';
import type { Build, Task } from '../../shared/core/model/types.ts';
import { blobKeys, type TaskResult } from '../../shared/core/model/wire.ts';
import { createPackageSplitter, packageOutcomes, type PackageClose } from '../../shared/agent/package-results.ts';
import { readFileSync } from 'node:fs';
import { publishMessage } from '../../shared/core/pipeline/publish.ts';
import { collections } from '../../shared/ports/state.ts';
import { createPipelineHarness, type PipelineHarness } from '../helpers/pipeline-harness.ts';

/** What `go test -list . ./...` prints for packages with these tests (none: no test files). */
function listing(packages: Record<string, string[]>): string {
  return Object.entries(packages)
    .map(([pkg, tests]) => (tests.length === 0 ? `?   \t${pkg}\t[no test files]\n` : `${tests.join('\n')}\nok  \t${pkg}\t0.012s\n`))
    .join('');
}

const sixPackages = {
  'example.com/m/a': ['TestA'],
  'example.com/m/b': ['TestB1', 'TestB2'],
  'example.com/m/c': ['TestC'],
  'example.com/m/d': ['TestD', 'ExampleD'],
  'example.com/m/e': ['TestE', 'BenchmarkE'],
  'example.com/m/f': ['TestF'],
  'example.com/m/tools': [],
};
const units = Object.entries(sixPackages).filter(([, tests]) => tests.length > 0).map(([pkg]) => pkg);

async function buildOf(h: PipelineHarness, id: string): Promise<Build> {
  const build = await h.state.get(collections.builds, id);
  assert.ok(build, `build ${id} exists`);
  return build;
}

async function tasksOf(h: PipelineHarness, ids: readonly string[] | undefined): Promise<Task[]> {
  const tasks = await Promise.all((ids ?? []).map((id) => h.state.get(collections.tasks, id)));
  return tasks.map((task, index) => {
    assert.ok(task, `task ${ids?.[index]} exists`);
    return task;
  });
}

/** Lands a make worker's snapshot and result (its listing in `output`) and runs the pipeline. */
async function finishMake(h: PipelineHarness, id: string, output: string, options: { snapshot?: boolean; status?: TaskResult['status'] } = {}) {
  const build = await buildOf(h, id);
  const taskId = build.sharding?.makeTaskId;
  assert.ok(taskId && build.sharding, 'the build has a make task');
  if (options.snapshot !== false) await h.blobs.put(blobKeys.snapshot(build.sharding.snapshotKey), 'a snapshot');
  const status = options.status ?? 'passed';
  const result: TaskResult = {
    v: 1,
    taskId,
    status,
    startedAt: 1000,
    finishedAt: 21_000,
    steps: [{ name: 'go vet ./...', exitCode: status === 'passed' ? 0 : 1, durationMs: 20_000 }],
    log: { bytes: 0, truncated: false, chunks: 0 },
    output,
    snapshot: { bytes: 10, files: 3, packSeconds: 0.5, uploadSeconds: 0.1 },
  };
  await h.blobs.put(blobKeys.result(taskId), JSON.stringify(result));
  await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'result' });
  await h.drain();
}

/**
 * Lands a shard worker's log and result, each unit exiting as `exits` says (default 0) after `ms` (default 1 s), and
 * publishes its notice without delivering it.
 */
async function landShard(h: PipelineHarness, task: Task, exits: Record<string, number> = {}, ms: Record<string, number> = {}) {
  let log = '';
  const steps: TaskResult['steps'] = [];
  for (const unit of task.units ?? []) {
    log += `:: Running go test ${unit.name}\n`;
    const start = Buffer.byteLength(log);
    const exitCode = exits[unit.name] ?? 0;
    log += exitCode === 0 ? `ok  \t${unit.name}\t0.1s\n` : `--- FAIL: Test (0.00s)\nFAIL\t${unit.name}\t0.1s\n`;
    steps.push({ name: unit.name, exitCode, durationMs: ms[unit.name] ?? 1000, log: { start, end: Buffer.byteLength(log) } });
    log += `:: go test ${unit.name} exited ${exitCode} after 1.0s\n`;
  }
  await h.blobs.put(blobKeys.logChunk(task.id, 0), log);
  const failed = steps.some((step) => step.exitCode !== 0);
  const result: TaskResult = {
    v: 1,
    taskId: task.id,
    status: failed ? 'failed' : 'passed',
    startedAt: 30_000,
    finishedAt: 30_000 + steps.reduce((sum, step) => sum + step.durationMs, 0),
    steps,
    log: { bytes: Buffer.byteLength(log), truncated: false, chunks: 1 },
    source: { seconds: 0.2 },
  };
  await h.blobs.put(blobKeys.result(task.id), JSON.stringify(result));
  await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: task.id, cause: 'result' });
}

/** Delivers every queued collect notice twice, in reverse order, then drains the rest of the pipeline. */
async function deliverTwiceReversed(h: PipelineHarness) {
  const notices = (await h.take('collect')).reverse();
  for (const notice of [...notices, ...notices]) await h.deliver('collect', notice);
  await h.drain();
}

async function mergedLogOf(h: PipelineHarness, id: string): Promise<string> {
  const bytes = await h.blobs.get(blobKeys.mergedLog(id));
  assert.ok(bytes, 'the merged log is written');
  return Buffer.from(bytes).toString('utf8');
}

/** Requests a `mod` build, lands its make result and returns the build with its shard tasks. */
async function throughMake(h: PipelineHarness, builder = 'mod', packages: Record<string, string[]> = sixPackages) {
  const id = await h.request(builder);
  await finishMake(h, id, listing(packages));
  const build = await buildOf(h, id);
  return { id, build, shards: await tasksOf(h, build.sharding?.shardTaskIds) };
}

describe('sharded builds: make once, then shards', () => {
  it('makes on one worker that lists the units and uploads a snapshot of the built tree', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('mod');
    const build = await buildOf(h, id);
    assert.equal(build.sharding?.phase, 'make');
    assert.equal(h.compute.started.length, 1);
    const spec = h.compute.started[0]?.spec;
    assert.ok(spec && build.sharding);
    assert.deepEqual(spec.steps.map((step) => step.name), ['go vet ./...', 'go build ./...', 'go test -list . ./...']);
    assert.equal(spec.steps[2]?.capture, true, 'the listing is captured, not logged');
    assert.ok(spec.snapshot?.url.includes(blobKeys.snapshot(build.sharding.snapshotKey)), 'a signed PUT for the snapshot');
    assert.equal(spec.source.layout, undefined, 'the make worker starts from the source tree');
  });

  it('plans the listed units into shards, each unit on exactly one, each shard starting from the snapshot', async () => {
    const h = await createPipelineHarness();
    const { build, shards } = await throughMake(h);
    assert.equal(build.sharding?.phase, 'test');
    assert.deepEqual(build.sharding?.units, units, 'packages without tests are not units; listing order kept');
    assert.equal(shards.length, 3);
    const ran = shards.flatMap((task) => (task.units ?? []).map((unit) => unit.name)).sort();
    assert.deepEqual(ran, [...units].sort(), 'every unit exactly once');
    assert.ok(shards.every((task) => (task.units ?? []).length >= 1), 'no shard is empty');
    const specs = h.compute.started.slice(1).map((request) => request.spec);
    assert.equal(specs.length, 3, 'one worker per shard');
    for (const spec of specs) {
      assert.equal(spec.source.layout, 'snapshot');
      assert.ok(spec.source.url.includes(blobKeys.snapshot(build.sharding?.snapshotKey ?? '')));
      assert.equal(spec.keepGoing, true);
      for (const step of spec.steps) assert.deepEqual(step.argv, ['go', 'test', '-count=1', step.name]);
    }
  });

  it('uses the trybot shard count for a trybot build', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('mod', { trybot: true });
    await finishMake(h, id, listing(sixPackages));
    assert.equal((await buildOf(h, id)).sharding?.shardTaskIds?.length, 2);
  });

  it('ends a make-only trybot build when its make passes, running no shard', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('mod', { trybot: true, mode: { kind: 'make' } });
    await finishMake(h, id, listing(sixPackages));
    const build = await buildOf(h, id);
    assert.equal(build.status, 'passed');
    assert.equal(build.reason, 'make only: no tests were run');
    assert.equal(h.compute.started.length, 1, 'the make worker alone');
  });

  it('runs only the named tests of a trybot build, and fails one that names a unit the listing lacks', async () => {
    const h = await createPipelineHarness();
    const named = ['example.com/m/b', 'example.com/m/e'];
    const id = await h.request('mod', { trybot: true, mode: { kind: 'tests', tests: named } });
    await finishMake(h, id, listing(sixPackages));
    const shards = await tasksOf(h, (await buildOf(h, id)).sharding?.shardTaskIds);
    assert.deepEqual(shards.flatMap((task) => (task.units ?? []).map((unit) => unit.name)).sort(), named);
    // The same tree again: planned from the snapshot and listing the first build left.
    const missing = await h.request('mod', { trybot: true, mode: { kind: 'tests', tests: ['example.com/m/a', 'example.com/m/nope'] } });
    const failed = await buildOf(h, missing);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.reason, 'no test unit named "example.com/m/nope" in the listing');
  });

  it('merges once under duplicated and reordered results: one verdict, one report, a log in listing order', async () => {
    const h = await createPipelineHarness();
    const { id, shards } = await throughMake(h);
    for (const task of [...shards].reverse()) await landShard(h, task);
    await deliverTwiceReversed(h);
    // The merge message again, late: nothing changes.
    await publishMessage(h.queue, topics.testsFinished, { v: 1, buildId: id });
    await h.drain();

    const build = await buildOf(h, id);
    assert.equal(build.status, 'passed');
    assert.equal(build.sharding?.phase, 'merged');
    assert.deepEqual(h.reported.map((reported) => reported.id), [id], 'reported once');
    assert.equal(build.sharding?.summary?.units, 6);
    assert.equal(build.sharding?.summary?.aggregateMs, 6000);
    const log = await mergedLogOf(h, id);
    const order = [...log.matchAll(/^ok {2}\t(\S+)/gm)].map((match) => match[1]);
    assert.deepEqual(order, units, 'units in listing order, whatever shard ran them');
    assert.doesNotMatch(log, /:: Running/, "the agent's own lines are not part of a unit's output");
    assert.match(log.trimEnd().split('\n').at(-1) ?? '', /^wall time \S+, aggregate time 6\.0s, time saved /);
    for (const unit of units) {
      const learned = await h.state.get(collections.durations, durationDocId('mod', unit));
      assert.equal(learned?.runs, 1, `${unit} learned once`);
      assert.equal(learned?.seconds, 1);
    }
  });

  it('retries failed units once on a fresh worker: flaky when they pass, failed when they fail again', async () => {
    const h = await createPipelineHarness();
    const { id, shards } = await throughMake(h);
    const flakyUnit = 'example.com/m/b';
    const brokenUnit = 'example.com/m/e';
    for (const task of shards) await landShard(h, task, { [flakyUnit]: 1, [brokenUnit]: 1 });
    await h.drain();
    const build = await buildOf(h, id);
    assert.equal(build.sharding?.phase, 'retry');
    const retries = await tasksOf(h, build.sharding?.retryTaskIds);
    assert.deepEqual(retries.flatMap((task) => (task.units ?? []).map((unit) => unit.name)).sort(), [flakyUnit, brokenUnit]);
    const retrySpecs = h.compute.started.filter((request) => retries.some((task) => task.id === request.taskId));
    assert.equal(retrySpecs.length, retries.length, 'each retry on a worker of its own');
    for (const request of retrySpecs) assert.equal(request.spec.env['HERMETIC_RETRY'], '1');

    for (const task of retries) await landShard(h, task, { [brokenUnit]: 1 });
    await deliverTwiceReversed(h);
    const merged = await buildOf(h, id);
    assert.equal(merged.status, 'failed');
    assert.match(merged.reason ?? '', /^1 of 6 units failed: example\.com\/m\/e; 1 of 6 units flaky \(failed, then passed on a fresh worker\): example\.com\/m\/b$/);
    assert.equal(merged.sharding?.summary?.flaky, 1);
    assert.equal(merged.sharding?.summary?.retried, 2);
    const log = await mergedLogOf(h, id);
    assert.match(log, /##### Failed units, run again on a fresh worker\n\n--- example\.com\/m\/b: passed on the retry/);
    assert.match(log, /^FLAKY example\.com\/m\/b: failed on shard-\d \(http:\/\/localhost\/log\/[0-9a-f]{24}\), then passed on the retry \(http:\/\/localhost\/log\/[0-9a-f]{24}\)$/m);
    assert.match(log, /^FAIL {2}example\.com\/m\/e: failed on shard-\d .*, then failed on the retry/m);
    assert.deepEqual(h.reported.map((reported) => reported.id), [id]);
  });

  it('calls a build flaky when every failed unit passed on its retry', async () => {
    const h = await createPipelineHarness();
    const { id, shards } = await throughMake(h);
    for (const task of shards) await landShard(h, task, { 'example.com/m/a': 1 });
    await h.drain();
    for (const task of await tasksOf(h, (await buildOf(h, id)).sharding?.retryTaskIds)) await landShard(h, task);
    await h.drain();
    const build = await buildOf(h, id);
    assert.equal(build.status, 'flaky');
    assert.match(build.reason ?? '', /example\.com\/m\/a/);
  });

  it('fails a build at once when the builder does not retry', async () => {
    const h = await createPipelineHarness();
    const { id, shards } = await throughMake(h, 'mod-noretry');
    for (const task of shards) await landShard(h, task, { 'example.com/m/c': 1 });
    await h.drain();
    const build = await buildOf(h, id);
    assert.equal(build.status, 'failed');
    assert.equal(build.sharding?.retryTaskIds, undefined);
    assert.match(await mergedLogOf(h, id), /^FAIL {2}example\.com\/m\/c: failed on shard-\d .*, then not retried$/m);
  });

  it('reuses the snapshot of a tree already made the same way: no make task, straight to the shards', async () => {
    const h = await createPipelineHarness();
    const first = await throughMake(h);
    const again = await h.request('mod-once', { commit: first.build.commit });
    const build = await buildOf(h, again);
    assert.equal(build.sharding?.snapshotReused, true);
    assert.equal(build.sharding?.makeTaskId, undefined);
    assert.equal(build.sharding?.snapshotKey, first.build.sharding?.snapshotKey);
    assert.equal(build.sharding?.shardTaskIds?.length, 1);
    const [only] = await tasksOf(h, build.sharding?.shardTaskIds);
    assert.ok(only);
    await landShard(h, only);
    await h.drain();
    assert.equal((await buildOf(h, again)).status, 'passed');
    assert.match(await mergedLogOf(h, again), /snapshot reused from an earlier build of this tree/);
  });

  it('learns from every run: the next plan uses the learned durations, and a long package is cut by its tests', async () => {
    const h = await createPipelineHarness();
    const slow = 'example.com/m/b';
    const first = await throughMake(h, 'mod', { ...sixPackages, [slow]: ['TestB1', 'TestB2', 'TestB3', 'TestB4'] });
    for (const task of first.shards) await landShard(h, task, {}, { [slow]: 60_000 });
    await h.drain();
    assert.equal((await buildOf(h, first.id)).status, 'passed');

    h.source.commit('demo', 'main', { 'b.go': 'package b\n' });
    const second = await throughMake(h, 'mod', { ...sixPackages, [slow]: ['TestB1', 'TestB2', 'TestB3', 'TestB4'] });
    const plan = second.build.sharding?.plan;
    assert.deepEqual(plan?.defaulted, [], 'every unit has a learned duration');
    assert.deepEqual(plan?.splits, [{ unit: slow, parts: 3 }], 'the package that pins the critical path is cut in parts');
    const parts = second.shards.flatMap((task) => task.units ?? []).filter((unit) => unit.run.kind === 'tests');
    assert.deepEqual(parts.flatMap((unit) => (unit.run.kind === 'tests' ? unit.run.tests : [])).sort(), ['TestB1', 'TestB2', 'TestB3', 'TestB4']);
    const steps = h.compute.started.flatMap((request) => request.spec.steps).filter((step) => step.argv.includes('-run'));
    assert.equal(steps.length, 3);
    for (const step of steps) assert.match(step.argv.join(' '), /^go test -count=1 -run \^\(TestB\d(\|TestB\d)*\)\$ example\.com\/m\/b$/);

    for (const task of second.shards) await landShard(h, task, {}, Object.fromEntries(parts.map((unit) => [unit.name, 21_000])));
    await h.drain();
    const learned = await h.state.get(collections.durations, durationDocId('mod', slow));
    // 60 s first, then its three parts: 63 s less two part overheads (5 s each), 53 s; weighted 0.3.
    assert.equal(learned?.runs, 2);
    assert.ok(Math.abs((learned?.seconds ?? 0) - (0.3 * 53 + 0.7 * 60)) < 1e-9, `learned ${learned?.seconds}`);
  });

  it('passes a build whose listing has no test units, with that reason', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('mod');
    await finishMake(h, id, listing({ 'example.com/m/tools': [] }));
    const build = await buildOf(h, id);
    assert.equal(build.status, 'passed');
    assert.equal(build.reason, 'no test units were listed');
    assert.deepEqual(h.reported.map((reported) => reported.id), [id]);
  });
});

describe('sharded builds: when things go wrong', () => {
  it('fails the build when make fails, with make\'s reason', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('mod');
    await finishMake(h, id, '', { status: 'failed' });
    const build = await buildOf(h, id);
    assert.equal(build.status, 'failed');
    assert.equal(build.reason, 'make: go vet ./... exited 1');
  });

  it('fails the build when the listing is not one, saying which line is wrong', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('mod');
    await finishMake(h, id, 'TestA\nrm -rf /\nok  \texample.com/m\t0.1s\n');
    const build = await buildOf(h, id);
    assert.equal(build.status, 'failed');
    assert.match(build.reason ?? '', /^make: cannot read the unit listing: listing line 2: expected a test name or a package result, got "rm -rf \/"$/);
  });

  it('makes again on a fresh worker when the make worker passed but its snapshot did not land', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('mod');
    await finishMake(h, id, listing(sixPackages), { snapshot: false });
    const build = await buildOf(h, id);
    assert.equal(build.sharding?.phase, 'make');
    const [retry] = await tasksOf(h, [build.sharding?.makeTaskId ?? '']);
    assert.equal(retry?.attempt, 2);
    assert.equal(retry?.status, 'launched');
  });

  it('runs a lost shard again on a fresh worker, then ends the build as an infra failure and stops the other shards', async () => {
    const h = await createPipelineHarness();
    const { id, shards } = await throughMake(h);
    const [lost, ...others] = shards;
    assert.ok(lost);
    h.compute.finish(lost.id, { code: 137, signal: null });
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: lost.id, cause: 'exited', exit: { reason: 'exited', code: 137, signal: null } });
    await h.drain();
    const build = await buildOf(h, id);
    const retried = build.sharding?.shardTaskIds?.find((taskId) => !shards.some((task) => task.id === taskId));
    assert.ok(retried, 'the lost shard has a new attempt');
    const [second] = await tasksOf(h, [retried]);
    assert.deepEqual(second?.units, lost.units, 'the same units');
    assert.equal(second?.attempt, 2);

    h.compute.finish(retried, { code: 137, signal: null });
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: retried, cause: 'exited', exit: { reason: 'exited', code: 137, signal: null } });
    await h.drain();
    const failed = await buildOf(h, id);
    assert.equal(failed.status, 'infra-failure');
    assert.match(failed.reason ?? '', /^shard-\d: worker lost 2 times; last: the worker exited with code 137 without a result$/);
    assert.deepEqual(await h.compute.list(), [], 'the other shards were stopped');
    for (const task of others) assert.ok(h.exits.some((exit) => exit.taskId === task.id), `${task.step} was stopped`);
    assert.deepEqual(h.reported.map((reported) => reported.id), [id]);
  });

  it("runs a Go tree shard's small package units in one dist test, each with its own result, and retries only the one that failed", async () => {
    const h = await createPipelineHarness();
    const id = await h.request('tree');
    await finishMake(h, id, ['go_test:bufio', 'go_test:errors', 'go_test:unicode/utf8', 'cgo_test', ''].join('\n'));
    const [shard] = await tasksOf(h, (await buildOf(h, id)).sharding?.shardTaskIds);
    assert.ok(shard);
    const spec = h.compute.started.find((request) => request.taskId === shard.id)?.spec;
    const batchUnits = [
      { name: 'go_test:bufio', package: 'bufio' },
      { name: 'go_test:errors', package: 'errors' },
      { name: 'go_test:unicode/utf8', package: 'unicode/utf8' },
    ];
    assert.deepEqual(
      spec?.steps.map((step) => ({ argv: step.argv, units: step.units })),
      [
        { argv: ['../bin/go', 'tool', 'dist', 'test', 'go_test:bufio', 'go_test:errors', 'go_test:unicode/utf8'], units: batchUnits },
        { argv: ['../bin/go', 'tool', 'dist', 'test', 'cgo_test'], units: undefined },
      ],
      'the package units share one dist test; any other unit keeps its own',
    );

    // The worker's result, as the agent makes it from what dist printed (captured from Go 1.19 with errors failing).
    const printed = readFileSync(new URL('../fixtures/dist-test/go1.19-one-failing.txt', import.meta.url));
    let log = ':: Running ../bin/go tool dist test go_test:bufio go_test:errors go_test:unicode/utf8\n';
    const start = Buffer.byteLength(log);
    const closes: PackageClose[] = [];
    const splitter = createPackageSplitter(batchUnits, () => 40_000 + 1000 * closes.length);
    for (let at = 0; at < printed.length; at += 7) closes.push(...splitter.push(printed.subarray(at, at + 7), start + at));
    log += `${printed.toString('utf8')}:: exited 1\n:: Running ../bin/go tool dist test cgo_test\nok\n:: exited 0\n`;
    const batch = packageOutcomes(batchUnits, closes, {
      exitCode: 1,
      signal: null,
      timedOut: false,
      startedAt: 39_000,
      endedAt: 42_500,
      log: { start, end: start + printed.length },
    });
    const cgoStart = Buffer.byteLength(log) - 'ok\n:: exited 0\n'.length;
    const steps = [...batch, { name: 'cgo_test', exitCode: 0, durationMs: 5000, log: { start: cgoStart, end: cgoStart + 3 } }];
    await h.blobs.put(blobKeys.logChunk(shard.id, 0), log);
    const result: TaskResult = { v: 1, taskId: shard.id, status: 'failed', startedAt: 39_000, finishedAt: 48_000, steps, log: { bytes: Buffer.byteLength(log), truncated: false, chunks: 1 } };
    await h.blobs.put(blobKeys.result(shard.id), JSON.stringify(result));
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: shard.id, cause: 'result' });
    await h.drain();

    const build = await buildOf(h, id);
    const [recorded] = await tasksOf(h, [shard.id]);
    const text = (range: { start: number; end: number } | undefined) => Buffer.from(log).subarray(range?.start, range?.end).toString('utf8');
    assert.deepEqual(
      recorded?.unitResults?.map((unit) => [unit.name, unit.status, unit.durationMs]),
      [
        ['go_test:bufio', 'passed', 1000],
        ['go_test:errors', 'failed', 1000],
        ['go_test:unicode/utf8', 'passed', 1000],
        ['cgo_test', 'passed', 5000],
      ],
    );
    const [bufio, errors, utf8] = recorded?.unitResults ?? [];
    assert.match(text(bufio?.log), /^\n##### Test execution environment\.\n[^]*##### Testing packages\.\nok  \tbufio\t\S+\n$/);
    assert.match(text(errors?.log), /^--- FAIL: TestHermeticFails \(0\.00s\)\n {4}zz_hermetic_test\.go:5: made to fail\nFAIL\nFAIL\terrors\t\S+\n$/);
    assert.match(text(utf8?.log), /^ok  \tunicode\/utf8\t\S+\nFAIL\ngo tool dist: Failed: exit status 1\n$/);

    assert.equal(build.sharding?.phase, 'retry');
    const [retry] = await tasksOf(h, build.sharding?.retryTaskIds);
    assert.deepEqual(retry?.units?.map((unit) => unit.name), ['go_test:errors'], 'only the failed unit runs again');
    const retrySpec = h.compute.started.find((request) => request.taskId === retry?.id)?.spec;
    assert.deepEqual(retrySpec?.steps.map((step) => step.argv), [['../bin/go', 'tool', 'dist', 'test', 'go_test:errors']]);
  });

  it('counts the units a timed-out shard never reached as failed, and runs them again', async () => {
    const h = await createPipelineHarness();
    const { id, shards } = await throughMake(h);
    const [slow, ...rest] = shards;
    assert.ok(slow);
    h.compute.finish(slow.id, { reason: 'deadline', code: null, signal: 'SIGKILL' });
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: slow.id, cause: 'exited', exit: { reason: 'deadline', code: null, signal: 'SIGKILL' } });
    for (const task of rest) await landShard(h, task);
    await h.drain();
    const build = await buildOf(h, id);
    assert.equal(build.sharding?.phase, 'retry');
    const [retry] = await tasksOf(h, build.sharding?.retryTaskIds);
    assert.deepEqual(retry?.units, slow.units);
  });
});
