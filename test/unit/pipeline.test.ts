import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { branchDocId, buildId } from '../../shared/core/model/ids.ts';
import { topics } from '../../shared/core/model/messages.ts';
import { blobKeys } from '../../shared/core/model/wire.ts';
import { defaultPipelineOptions } from '../../shared/core/pipeline/deps.ts';
import { publishMessage } from '../../shared/core/pipeline/publish.ts';
import { collections } from '../../shared/ports/state.ts';
import { createPipelineHarness, type PipelineHarness } from '../helpers/pipeline-harness.ts';
import { finish, launchOne, result } from '../helpers/pipeline-steps.ts';

async function tasksOf(h: PipelineHarness, build: string) {
  return h.state.query(collections.tasks, { where: { buildId: build } });
}

describe('pipeline: happy path', () => {
  it('takes a commit from poll to a reported verdict', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    assert.equal(h.compute.started.length, 1);
    assert.equal((await h.state.get(collections.tasks, taskId))?.status, 'launched');
    assert.equal((await h.state.get(collections.builds, id))?.status, 'running');
    await finish(h, taskId, 'passed');
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'passed');
    assert.ok(build?.reportedAt !== undefined);
    assert.deepEqual(h.reported.map((b) => b.id), [id]);
  });

  it('runs from a plain delivery through the core handlers, in no platform\'s wire shape', async () => {
    const h = await createPipelineHarness();
    h.source.push('demo', 'main');
    await h.poll();
    const [request] = await h.take('plan');
    assert.ok(request);
    const plain = { messageId: request.messageId, topic: request.topic, subscription: 'plan', data: request.data, attributes: request.attributes, attempt: 1 };
    assert.deepEqual(await h.handlers.message.plan(plain), { action: 'ack' });
    const [ready] = await h.take('launch');
    assert.ok(ready);
    assert.deepEqual(await h.handlers.message.launch({ ...plain, messageId: ready.messageId, topic: ready.topic, subscription: 'launch', data: ready.data }), { action: 'ack' });
    assert.equal(h.compute.started.length, 1);
    const unknown = { ...plain, data: Buffer.from(JSON.stringify({ v: 1, taskId: 'f'.repeat(24) })) };
    assert.deepEqual(await h.handlers.message.launch(unknown), { action: 'dead-letter', reason: `task ${'f'.repeat(24)} does not exist` });
  });

  it('hands the worker only signed URLs for its own task, and the builder env', async () => {
    const h = await createPipelineHarness();
    const { taskId } = await launchOne(h);
    const spec = h.compute.started[0]?.spec;
    assert.ok(spec);
    assert.equal(spec.env['GO_BUILDER_NAME'], 'ok');
    for (const url of [spec.source.url, spec.result.url, ...spec.log.chunkUrls]) {
      assert.match(url, /[?&]s=[0-9a-f]+/);
    }
    assert.ok(spec.result.url.includes(`results/${taskId}.json`));
    assert.ok(spec.log.chunkUrls.every((url) => url.includes(`tasks/${taskId}/log/`)));
    assert.equal(h.compute.started[0]?.spot, true, 'builders allow Spot VMs unless they say otherwise');
  });

  it('asks for a standard VM, and records one, for a builder that refuses Spot', async () => {
    const h = await createPipelineHarness();
    const asked: boolean[] = [];
    Object.assign(h.compute, {
      machineOf: (_hostType: string, spotAllowed: boolean) => {
        asked.push(spotAllowed);
        return { type: 'e2-standard-2', spot: spotAllowed };
      },
    });
    const commit = h.source.push('demo', 'main');
    await h.request('no-spot', { commit });
    const [request] = h.compute.started;
    assert.equal(request?.spot, false);
    assert.deepEqual(asked, [false]);
    const [task] = await h.state.query(collections.tasks, { where: { buildId: buildId('demo', commit, 'no-spot') } });
    assert.deepEqual(task?.machine, { type: 'e2-standard-2', spot: false });
  });
});

describe('pipeline: a poll of many commits', () => {
  it('records them in overlapping groups, in order, and moves the head only once every build is requested', async () => {
    const h = await createPipelineHarness();
    h.source.push('demo', 'main');
    await h.poll();
    await h.take('plan');
    const branch = async () => h.state.get(collections.branches, branchDocId('demo', 'main'));
    const first = Array.from({ length: 40 }, (_, i) => h.source.push('demo', 'main', `first ${i}`));
    await h.poll();
    const builds = await Promise.all(first.map((commit) => h.state.get(collections.builds, buildId('demo', commit, 'ok'))));
    const seqs = builds.map((build) => build?.seq ?? Number.NaN);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'later commits have later sequence numbers');
    assert.equal(new Set(seqs).size, 40);
    assert.deepEqual(new Set((await h.take('plan')).map((delivery) => JSON.parse(Buffer.from(delivery.data).toString()).commit)), new Set(first));
    assert.equal((await branch())?.head, first.at(-1));

    // One commit's transaction fails mid-poll: the others land, the head stays, and the next poll finishes the job.
    const second = Array.from({ length: 20 }, (_, i) => h.source.push('demo', 'main', `second ${i}`));
    const transaction = h.state.transaction.bind(h.state);
    let calls = 0;
    h.state.transaction = async (fn) => {
      calls++;
      if (calls === 18) throw new Error('the store refused this one');
      return transaction(fn);
    };
    await h.poll();
    h.state.transaction = transaction;
    assert.equal((await branch())?.head, first.at(-1));
    assert.match((await branch())?.error ?? '', /the store refused this one/);
    await h.poll();
    assert.equal((await branch())?.head, second.at(-1));
    assert.equal((await branch())?.error, undefined);
    for (const commit of second) assert.ok(await h.state.get(collections.builds, buildId('demo', commit, 'ok')), commit);
    assert.equal((await h.state.query(collections.builds)).length, 61);
  });
});

describe('pipeline: every message twice changes nothing the second time', () => {
  it('poll-tick: builds are created once', async () => {
    const h = await createPipelineHarness();
    h.source.push('demo', 'main');
    await h.poll();
    await h.poll();
    assert.equal((await h.state.query(collections.builds)).length, 1);
    assert.equal((await h.take('plan')).length, 1, 'only the first poll requested a build');
  });

  it('build-requested: one task per build', async () => {
    const h = await createPipelineHarness();
    h.source.push('demo', 'main');
    await h.poll();
    const [request] = await h.take('plan');
    assert.ok(request);
    await h.deliver('plan', request);
    await h.deliver('plan', request);
    const [build] = await h.state.query(collections.builds);
    assert.ok(build);
    assert.equal((await tasksOf(h, build.id)).length, 1);
    await h.drain();
    assert.equal(h.compute.started.length, 1);
  });

  it('task-ready: one worker per task, delivered twice in a row or at once', async () => {
    const h = await createPipelineHarness();
    h.source.push('demo', 'main');
    await h.poll();
    for (const delivery of await h.take('plan')) await h.deliver('plan', delivery);
    const [ready] = await h.take('launch');
    assert.ok(ready);
    await Promise.all([h.deliver('launch', ready), h.deliver('launch', ready)]);
    await h.deliver('launch', ready);
    assert.equal(h.compute.started.length, 1);
    assert.equal(h.compute.startCalls, 2, 'both concurrent deliveries reached compute, which started one worker');
  });

  it('task-finished: one verdict per build, whichever notice comes first', async () => {
    for (const order of [['result', 'exited'], ['exited', 'result']] as const) {
      const h = await createPipelineHarness();
      const { buildId: id, taskId } = await launchOne(h);
      await h.blobs.put(blobKeys.result(taskId), JSON.stringify(result(taskId, 'failed')));
      for (const cause of order) {
        await publishMessage(h.queue, topics.taskFinished, {
          v: 1,
          taskId,
          cause,
          ...(cause === 'exited' ? { exit: { reason: 'exited' as const, code: 0, signal: null } } : {}),
        });
      }
      const notices = await h.take('collect');
      for (const notice of [...notices, ...notices]) await h.deliver('collect', notice);
      const build = await h.state.get(collections.builds, id);
      assert.equal(build?.status, 'failed', `order ${order.join(' then ')}`);
      assert.equal((await tasksOf(h, id)).length, 1, 'no retry for a task with a result');
      const finishedAt = build?.finishedAt;
      await h.drain();
      assert.equal((await h.state.get(collections.builds, id))?.finishedAt, finishedAt);
      assert.equal(h.reported.length, 1);
    }
  });

  it('build-finished: one report', async () => {
    const h = await createPipelineHarness();
    const { taskId } = await launchOne(h);
    await h.blobs.put(blobKeys.result(taskId), JSON.stringify(result(taskId, 'passed')));
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'result' });
    for (const delivery of await h.take('collect')) await h.deliver('collect', delivery);
    const [finished] = await h.take('report');
    assert.ok(finished);
    await h.deliver('report', finished);
    await h.deliver('report', finished);
    assert.equal(h.reported.length, 1);
  });
});

describe('pipeline: out of order', () => {
  it('a late task-ready or build-requested after the verdict starts nothing', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, commit, taskId } = await launchOne(h);
    await finish(h, taskId, 'passed');
    await publishMessage(h.queue, topics.taskReady, { v: 1, taskId });
    await publishMessage(h.queue, topics.buildRequested, { v: 1, buildId: id, repo: 'demo', commit, builder: 'ok' });
    await h.drain();
    assert.equal(h.compute.started.length, 1);
    assert.equal((await tasksOf(h, id)).length, 1);
    assert.equal(h.reported.length, 1);
  });

  it('a result notice before the result object is ignored until the object or the exit arrives', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'result' });
    await h.drain();
    assert.equal((await h.state.get(collections.builds, id))?.status, 'running');
    await finish(h, taskId, 'passed');
    assert.equal((await h.state.get(collections.builds, id))?.status, 'passed');
  });

  it('a result that lands before launch records the worker yields one verdict and no second worker', async () => {
    const h = await createPipelineHarness();
    h.source.push('demo', 'main');
    await h.poll();
    for (const delivery of await h.take('plan')) await h.deliver('plan', delivery);
    const [build] = await h.state.query(collections.builds);
    assert.ok(build?.taskId);
    const held = await h.take('launch'); // task-ready is held back: the task stays pending
    await finish(h, build.taskId, 'passed');
    assert.equal((await h.state.get(collections.builds, build.id))?.status, 'passed');
    for (const delivery of held) await h.deliver('launch', delivery);
    assert.equal(h.compute.started.length, 0, 'a finished task is never launched');
    assert.equal(h.reported.length, 1);
  });
});

describe('pipeline: lost workers, deadlines and bad results', () => {
  it('a worker that dies without a result is retried, then the build is an infra failure', async () => {
    const h = await createPipelineHarness();
    const { buildId: id } = await launchOne(h);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const build = await h.state.get(collections.builds, id);
      assert.equal(build?.attempts, attempt);
      assert.ok(build?.taskId);
      h.compute.finish(build.taskId, { reason: 'exited', code: 137, signal: 'SIGKILL' });
      for (const exit of h.exits.splice(0)) {
        await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId: exit.taskId, cause: 'exited', exit: { reason: exit.reason, code: exit.code, signal: exit.signal } });
      }
      await h.drain();
    }
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'infra-failure');
    assert.match(build?.reason ?? '', /worker lost 3 times.*killed by SIGKILL/);
    assert.equal(h.compute.started.length, 3, 'one fresh worker per attempt');
    assert.equal((await tasksOf(h, id)).filter((task) => task.status === 'lost').length, 3);
    assert.equal(h.reported.length, 1);
  });

  it('an agent error result counts as a lost worker', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    await finish(h, taskId, 'error');
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'running');
    assert.equal(build?.attempts, 2);
    assert.equal((await h.state.get(collections.tasks, taskId))?.reason, 'agent error: could not fetch the source');
  });

  it("a tree over its unpack limit is the commit's failure, naming the limit, not retried", async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    assert.deepEqual(h.compute.started[0]?.spec.unpack, { maxBytes: 8 * 2 ** 30, maxEntries: 500_000 }, "the builder's limits reach the worker");
    const reason = 'the source unpacks past its limit of 8589934592 bytes (entry 9, "big", takes it to 9000000000); no step was run';
    await h.blobs.put(blobKeys.result(taskId), JSON.stringify({ ...result(taskId, 'failed'), steps: [], error: reason }));
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'result' });
    await h.drain();
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'failed');
    assert.equal(build?.reason, reason);
    assert.equal(build?.attempts, 1);
  });

  it('a malformed result is a lost attempt with the reason, not a crash', async () => {
    const h = await createPipelineHarness();
    const { taskId } = await launchOne(h);
    await h.blobs.put(blobKeys.result(taskId), '{"v":1,"taskId":"nope"}');
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'result' });
    await h.drain();
    const task = await h.state.get(collections.tasks, taskId);
    assert.equal(task?.status, 'lost');
    assert.match(task?.reason ?? '', /^malformed result: result: taskId/);
  });

  it('a worker killed at its deadline makes the build fail as timed out', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'exited', exit: { reason: 'deadline', code: null, signal: 'SIGKILL' } });
    await h.drain();
    assert.equal((await h.state.get(collections.tasks, taskId))?.status, 'timed-out');
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'failed');
    assert.match(build?.reason ?? '', /killed at its deadline \(60s\)/);
  });

  it('a host type this runtime cannot run is an infra failure that says so, with no worker', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('vm');
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'infra-failure');
    assert.match(build?.reason ?? '', /^host type "windows-amd64" is not available on this runtime: it runs: host$/);
    assert.equal(build?.attempts, 1, 'no retry: another attempt would fare no better');
    assert.equal(h.compute.started.length, 0);
  });
});

describe('pipeline: a program the worker lacks is the machine\'s fault, never the commit\'s', () => {
  it('a step that exited 127 makes an infra failure naming the program and its package, with no retry', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    const missing = { ...result(taskId, 'failed', 127), steps: [{ name: 'go vet ./...', exitCode: 127, durationMs: 1, missing: 'go' }] };
    await h.blobs.put(blobKeys.result(taskId), JSON.stringify(missing));
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'result' });
    await h.drain();
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'infra-failure');
    assert.equal(
      build?.reason,
      'go vet ./... exited 127: go is not installed on this machine, whose own tools the process sandbox (host type host) runs: apt-get install golang-go',
    );
    assert.equal(build?.attempts, 1, 'no retry: the same machine lacks it the next time');
  });

  it('a 127 whose program the agent could not name still blames the worker, pointing at the log', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    await finish(h, taskId, 'failed', 127);
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'infra-failure');
    assert.equal(build?.reason, 'true exited 127: a program it runs is not installed on the host worker (the log names it)');
  });

  it('a builder whose tools the compute knows are missing ends as an infra failure before any worker starts', async () => {
    const h = await createPipelineHarness();
    const asked: Array<[string, readonly string[]]> = [];
    Object.assign(h.compute, {
      missingPrograms: async (hostType: string, programs: readonly string[]) => {
        asked.push([hostType, programs]);
        return [...programs];
      },
    });
    const id = await h.request('ok');
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'infra-failure');
    assert.equal(build?.reason, 'sh is not installed on this machine, whose own tools the process sandbox (host type host) runs: apt-get install dash');
    assert.deepEqual(asked, [['host', ['sh']]]);
    assert.equal(h.compute.started.length, 0);
  });
});

describe('pipeline: a spec the worker would refuse', () => {
  it('ends the build as an infra failure that says why, with no worker', async () => {
    const h = await createPipelineHarness();
    const ok = h.config.builders.get('ok');
    assert.ok(ok);
    h.config.builders.set('bad', { ...ok, name: 'bad', steps: [{ name: 'x'.repeat(300), argv: ['true'] }] });
    const id = await h.request('bad');
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'infra-failure');
    assert.match(build?.reason ?? '', /^cannot make a valid task spec: steps\.0\.name: Too big/);
    assert.equal(h.compute.started.length, 0);
  });
});

describe('pipeline: host types', () => {
  it('runs a builder on its fallback host type where its own is not available, and records it', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('fb');
    assert.equal(h.compute.started[0]?.hostType, 'host');
    const [task] = await tasksOf(h, id);
    assert.equal(task?.hostType, 'host');
    assert.equal(task?.status, 'launched');
  });
});

describe('pipeline: a handler that keeps failing gives up visibly on the last delivery', () => {
  it('launch: the task counts as a lost worker, and the message is kept with the reason', async () => {
    const h = await createPipelineHarness();
    h.source.push('demo', 'main');
    h.source.archive = async () => {
      throw new Error('git archive: bad object');
    };
    await h.poll();
    for (const delivery of await h.take('plan')) await h.deliver('plan', delivery);
    const [ready] = await h.take('launch');
    assert.ok(ready);
    for (let attempt = 1; attempt < 5; attempt++) {
      await assert.rejects(h.deliver('launch', { ...ready, attempt }), /bad object/);
    }
    await h.deliver('launch', { ...ready, attempt: 5 }); // the last delivery: acknowledged
    const { taskId } = JSON.parse(Buffer.from(ready.data).toString()) as { taskId: string };
    const task = await h.state.get(collections.tasks, taskId);
    assert.equal(task?.status, 'lost');
    assert.match(task?.reason ?? '', /^launch failed 5 times; last: git archive: bad object/);
    const [build] = await h.state.query(collections.builds);
    assert.equal(build?.attempts, 2, 'a fresh attempt was made');
    const [letter] = await h.queue.list(1);
    assert.equal(letter?.topic, 'task-ready');
    assert.equal(letter?.attempts, 5);
  });

  it('plan: the build becomes an infra failure that says why', async () => {
    const h = await createPipelineHarness();
    h.source.push('demo', 'main');
    await h.poll();
    const [request] = await h.take('plan');
    assert.ok(request);
    const transaction = h.state.transaction.bind(h.state);
    let failures = 5; // every delivery's own transaction fails; the give-up's succeeds
    h.state.transaction = (fn) => (failures-- > 0 ? Promise.reject(new Error('database is locked')) : transaction(fn));
    for (let attempt = 1; attempt < 5; attempt++) await assert.rejects(h.deliver('plan', { ...request, attempt }), /locked/);
    await h.deliver('plan', { ...request, attempt: 5 });
    const [build] = await h.state.query(collections.builds);
    assert.equal(build?.status, 'infra-failure');
    assert.equal(build?.reason, 'could not plan: failed 5 times; last: database is locked');
    await h.drain();
    assert.equal(h.reported.length, 1, 'the failure is reported like any verdict');
  });
});

describe('pipeline: the reaper', () => {
  async function reap(h: PipelineHarness) {
    await publishMessage(h.queue, topics.reapTick, { v: 1 });
    await h.drain();
  }

  it('reports a launched task whose worker vanished, and the task is retried on a fresh worker', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    h.compute.finish(taskId); // the worker is gone, and its exit notice is lost with the runtime that heard it
    h.exits.length = 0;
    await reap(h);
    assert.equal((await h.state.get(collections.tasks, taskId))?.status, 'launched', 'too early to call it lost');
    h.advance(defaultPipelineOptions.reapGraceMs + 1);
    await reap(h);
    const task = await h.state.get(collections.tasks, taskId);
    assert.equal(task?.status, 'lost');
    assert.equal(task?.reason, 'the worker vanished without a result');
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.attempts, 2);
    assert.equal(h.compute.started.length, 2);
    await reap(h);
    assert.equal(h.compute.started.length, 2, 'a second sweep changes nothing');
  });

  it('removes a worker past its deadline and the build fails as timed out', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    h.advance(60_000 + defaultPipelineOptions.reapGraceMs + 1); // the builder's timeout is 60 s
    await reap(h);
    assert.deepEqual((await h.compute.list()).map((worker) => worker.taskId), []);
    assert.equal((await h.state.get(collections.tasks, taskId))?.status, 'timed-out');
    assert.equal((await h.state.get(collections.builds, id))?.status, 'failed');
  });

  it('leaves a live worker within its deadline alone', async () => {
    const h = await createPipelineHarness();
    const { taskId } = await launchOne(h);
    h.advance(defaultPipelineOptions.reapGraceMs + 1);
    await reap(h);
    assert.equal((await h.state.get(collections.tasks, taskId))?.status, 'launched');
    assert.equal((await h.compute.list()).length, 1);
  });
});

describe('pipeline: malformed messages go to the dead letters with the reason', () => {
  const cases = [
    ['plan', 'not json', /build-requested message: not JSON/],
    ['plan', '{"v":1,"buildId":"xyz","repo":"demo","commit":"abc","builder":"ok"}', /buildId: expected a 24-hex-digit ID; commit: expected a full commit hash/],
    ['launch', '{"v":2,"taskId":"000000000000000000000000"}', /task-ready message: v: /],
    ['launch', '{"v":1,"taskId":"000000000000000000000000"}', /task 000000000000000000000000 does not exist/],
    ['collect', '{"v":1,"taskId":"000000000000000000000000","cause":"maybe"}', /cause: /],
    ['report', '{"v":1,"buildId":"000000000000000000000000","extra":true}', /Unrecognized key: "extra"/],
    ['poll', '{"v":1,"repos":["$(rm -rf /)"]}', /repos.0: expected a lower-case name/],
  ] as const;
  for (const [name, data, reason] of cases) {
    it(`${name}: ${data.slice(0, 40)}`, async () => {
      const h = await createPipelineHarness();
      await h.deliverRaw(name, data);
      const [letter] = await h.queue.list();
      assert.ok(letter, 'a dead letter was recorded');
      assert.match(letter.reason, reason);
      assert.equal(Buffer.from(letter.data).toString(), data, 'the message is kept as it came');
    });
  }
});

describe("pipeline: a full disk is the machine's fault, never the commit's", () => {
  it('a step that failed on a full disk makes a lost worker naming the disk, retried on a fresh one', async () => {
    const h = await createPipelineHarness();
    const { buildId: id, taskId } = await launchOne(h);
    const diskFull = { path: '/work', freeBytes: 4096, totalBytes: 10 * 2 ** 30, freeFiles: 1000, totalFiles: 655360 };
    const full = { ...result(taskId, 'error'), error: "the worker's disk is full", steps: [{ name: 'make', exitCode: 2, durationMs: 1, diskFull }] };
    await h.blobs.put(blobKeys.result(taskId), JSON.stringify(full));
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'result' });
    await h.drain();
    assert.equal((await h.state.get(collections.tasks, taskId))?.reason, "make exited 2 with the worker's disk full: 4.0 KiB free of 10 GiB on the file system of /work");
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'running');
    assert.equal(build?.attempts, 2, 'retried: the next worker may find room');
  });

  it('a file system out of files (inodes) is named as such', async () => {
    const h = await createPipelineHarness();
    const { taskId } = await launchOne(h);
    const diskFull = { path: '/work', freeBytes: 5 * 2 ** 30, totalBytes: 10 * 2 ** 30, freeFiles: 0, totalFiles: 655360 };
    const full = { ...result(taskId, 'error'), steps: [{ name: 'make', exitCode: 1, durationMs: 1, diskFull }] };
    await h.blobs.put(blobKeys.result(taskId), JSON.stringify(full));
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'result' });
    await h.drain();
    assert.equal((await h.state.get(collections.tasks, taskId))?.reason, "make exited 1 with the worker's disk full: no file left of 655360 (5.0 GiB free) on the file system of /work");
  });

  it("a worker whose result the runtime had no room for ends with the runtime's note as its reason", async () => {
    const h = await createPipelineHarness();
    const { taskId } = await launchOne(h);
    const note = 'its result was refused: no room for blob "results/x.json": 0 bytes free of 64 MiB on the file system of /data/blobs';
    await publishMessage(h.queue, topics.taskFinished, { v: 1, taskId, cause: 'exited', exit: { reason: 'exited', code: 1, signal: null, note } });
    await h.drain();
    const task = await h.state.get(collections.tasks, taskId);
    assert.equal(task?.status, 'lost');
    assert.equal(task?.reason, `the worker exited with code 1 without a result: ${note}`);
  });
});
