import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { sign } from '@octokit/webhooks-methods';
import { triggers, type MessageFunctionName } from '../../shared/runtimes/google-cloud/functions.ts';
import { registerFunctions } from '../../functions/register.ts';
import { messagePublishedEvent } from '../../shared/adapters/gcp/pubsub-function.ts';
import { buildId } from '../../shared/core/model/ids.ts';
import { blobKeys, type TaskResult } from '../../shared/core/model/wire.ts';
import { collections } from '../../shared/ports/state.ts';
import { createMemoryGitHub } from '../fakes/memory-github.ts';
import { serve } from '../helpers/functions-server.ts';
import { createPipelineHarness, type PipelineHarness } from '../helpers/pipeline-harness.ts';

const webhookSecret = 'a webhook secret';

function passedResult(taskId: string): TaskResult {
  return {
    v: 1,
    taskId,
    status: 'passed',
    startedAt: 1,
    finishedAt: 2,
    steps: [{ name: 'true', exitCode: 0, durationMs: 1 }],
    log: { bytes: 0, truncated: false, chunks: 0 },
  };
}

function pubsubEvent(topic: string, data: unknown, messageId = 'm-1', attributes: Record<string, string> = {}, deliveryAttempt = 1) {
  return messagePublishedEvent({
    project: 'p',
    topic,
    subscription: `${topic}-sub`,
    messageId,
    data: Buffer.from(typeof data === 'string' ? data : JSON.stringify(data)),
    attributes,
    publishedAt: Date.parse('2026-11-28T00:00:00Z'),
    deliveryAttempt,
  });
}

/** A Cloud Storage bucket notification for an object, as Pub/Sub carries it (OBJECT_FINALIZE, JSON_API_V1). */
function objectFinalizedEvent(name: string, messageId: string) {
  const object = { kind: 'storage#object', bucket: 'hermetic-blobs', name, generation: '1764547200000000', size: '512', contentType: 'application/json' };
  return pubsubEvent('result-landed', object, messageId, {
    eventType: 'OBJECT_FINALIZE',
    payloadFormat: 'JSON_API_V1',
    bucketId: object.bucket,
    objectId: name,
    objectGeneration: object.generation,
    notificationConfig: 'projects/_/buckets/hermetic-blobs/notificationConfigs/1',
  });
}

/** Posts a CloudEvent in structured mode, as Eventarc does; returns the HTTP status. */
async function post(url: string, event: unknown): Promise<number> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/cloudevents+json' },
    body: JSON.stringify(event),
  });
  await response.arrayBuffer();
  return response.status;
}

describe('entry points through functions-framework', () => {
  let h: PipelineHarness;
  const servers: Server[] = [];
  let plan: string;
  let launch: string;
  let landed: string;
  let deadLetter: string;
  let dashboard: string;
  let webhook: string;
  let build: string;
  let commit: string;
  let loads = 0;

  before(async () => {
    const github = createMemoryGitHub();
    github.open(3, { sha: 'e'.repeat(40), ref: 'change' }, 'f'.repeat(40));
    h = await createPipelineHarness({ github, webhookSecret });
    registerFunctions(async () => {
      // The first load meets a passing fault (a secret not readable yet, a client that could not start).
      if (++loads === 1) throw new Error('a passing fault');
      return h.functions;
    });
    for (const [name, set] of [
      ['plan', (url: string) => (plan = url)],
      ['launch', (url: string) => (launch = url)],
      ['landed', (url: string) => (landed = url)],
      ['deadLetter', (url: string) => (deadLetter = url)],
      ['dashboard', (url: string) => (dashboard = url)],
      ['webhook', (url: string) => (webhook = url)],
    ] as const) {
      const { url, server } = await serve(name);
      servers.push(server);
      set(url);
    }
    commit = h.source.push('demo', 'main');
    build = buildId('demo', commit, 'ok');
    await h.poll();
    await h.take('plan'); // the test delivers build-requested itself, over HTTP
  });

  after(async () => {
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
  });

  it('tries a failed load again on the next invocation, and keeps the one that succeeded', async () => {
    assert.equal((await fetch(`${dashboard}/api/grid`)).status, 500);
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${dashboard}/api/grid`)).status, 200);
    assert.equal(loads, 2);
  });

  it('handles a Pub/Sub CloudEvent, and its redelivery changes nothing', async () => {
    const event = pubsubEvent('build-requested', { v: 1, buildId: build, repo: 'demo', commit, builder: 'ok' });
    assert.equal(await post(plan, event), 204);
    assert.equal(await post(plan, event), 204);
    assert.equal((await h.state.query(collections.tasks, { where: { buildId: build } })).length, 1);
  });

  it('acknowledges a malformed message and keeps it in the dead letters with the reason', async () => {
    assert.equal(await post(plan, pubsubEvent('build-requested', '{"v":1,"buildId":"nope"}', 'm-bad')), 204);
    const [letter] = await h.queue.list(1);
    assert.match(letter?.reason ?? '', /build-requested message: buildId: expected a 24-hex-digit ID/);
  });

  it('collects a task when its result object lands, once however often the notification comes', async () => {
    const other = h.source.push('demo', 'main');
    const id = buildId('demo', other, 'ok');
    await h.poll();
    for (const delivery of await h.take('plan')) await h.deliver('plan', delivery);
    const [task] = await h.state.query(collections.tasks, { where: { buildId: id } });
    assert.ok(task);
    for (const delivery of await h.take('launch')) {
      // Only this build's task is launched here; the first build's stays queued for the tests below.
      if (Buffer.from(delivery.data).toString().includes(task.id)) await h.deliver('launch', delivery);
      else await h.queue.publish('task-ready', delivery.data);
    }
    assert.equal((await h.state.get(collections.tasks, task.id))?.status, 'launched');
    await h.blobs.put(blobKeys.result(task.id), JSON.stringify(passedResult(task.id)));
    const event = objectFinalizedEvent(blobKeys.result(task.id), 'm-landed');
    assert.equal(await post(landed, event), 204);
    assert.equal(await post(landed, event), 204);
    assert.equal((await h.state.get(collections.tasks, task.id))?.status, 'passed');
    assert.equal((await h.state.get(collections.builds, id))?.status, 'passed');
    for (const delivery of await h.take('report')) await h.deliver('report', delivery);
    assert.deepEqual(
      h.reported.map((build) => build.id),
      [id],
      'one report for the two notifications',
    );
  });

  it('ignores objects that are not results, and dead-letters a notification without an object name', async () => {
    const before = (await h.queue.list(100)).length;
    assert.equal(await post(landed, objectFinalizedEvent('tasks/0123456789abcdef01234567/log/0000', 'm-log')), 204);
    assert.equal((await h.queue.list(100)).length, before, 'a log chunk is no dead letter');
    assert.equal(await post(landed, pubsubEvent('result-landed', { bucket: 'hermetic-blobs' }, 'm-noname', { eventType: 'OBJECT_FINALIZE' })), 204);
    const [letter] = await h.queue.list(1);
    assert.match(letter?.reason ?? '', /result-landed message: name: /);
  });

  it('keeps what Pub/Sub forwards to the dead-letter topic, and records what its function would have on its last delivery', async () => {
    const stuck = h.source.push('demo', 'main');
    const id = buildId('demo', stuck, 'ok');
    await h.poll();
    const [requested] = (await h.take('plan')).filter((delivery) => Buffer.from(delivery.data).toString().includes(id));
    assert.ok(requested, 'the poll requested a build');
    assert.equal(requested.attributes['hermetic-topic'], 'build-requested', 'every message names its topic');
    const source = 'projects/p/subscriptions/eventarc-us-central1-plan-123-sub-456';
    const event = pubsubEvent('dead-letters', JSON.parse(Buffer.from(requested.data).toString()) as unknown, 'm-dead', {
      ...requested.attributes,
      CloudPubSubDeadLetterSourceSubscription: source,
      CloudPubSubDeadLetterSourceSubscriptionProject: 'p',
      CloudPubSubDeadLetterSourceDeliveryCount: '5',
      CloudPubSubDeadLetterSourceTopicPublishTime: '2026-11-28T00:00:00.000Z',
    });
    assert.equal(await post(deadLetter, event), 204);
    assert.equal(await post(deadLetter, event), 204, 'a redelivered dead letter changes nothing more');
    const build = await h.state.get(collections.builds, id);
    assert.equal(build?.status, 'infra-failure', 'the build that could never be planned says so');
    assert.match(build?.reason ?? '', /could not plan: Pub\/Sub gave up after 5 deliveries/);
    const [letter] = await h.queue.list(1);
    assert.equal(letter?.topic, 'build-requested');
    assert.equal(letter?.subscription, source);
    assert.equal(letter?.attempts, 5);
  });

  it('acknowledges malformed messages on every Pub/Sub function, naming the topic and the field', async () => {
    for (const name of Object.keys(triggers) as MessageFunctionName[]) {
      if (name === 'deadLetter') continue; // it keeps whatever Pub/Sub forwards, as it came
      const { url, server } = await serve(name);
      servers.push(server);
      const topic = triggers[name];
      assert.equal(await post(url, pubsubEvent(topic, '{"v":2}', `m-bad-${name}`)), 204, name);
      const [letter] = await h.queue.list(1);
      assert.equal(letter?.topic, topic);
      assert.match(letter?.reason ?? '', new RegExp(`^${topic} message: `), name);
      assert.equal(await post(url, pubsubEvent(topic, 'not json', `m-nojson-${name}`)), 204, name);
      assert.match((await h.queue.list(1))[0]?.reason ?? '', /not JSON/, name);
    }
  });

  it('answers 500 on a retryable failure, so the platform redelivers', async () => {
    const [ready] = await h.take('launch');
    assert.ok(ready);
    await h.compute.close(); // a compute that refuses to start workers
    const event = pubsubEvent('task-ready', JSON.parse(Buffer.from(ready.data).toString()) as unknown, 'm-ready');
    assert.equal(await post(launch, event), 500);
    const task = (await h.state.query(collections.tasks, { where: { buildId: build } }))[0];
    assert.equal(task?.status, 'pending', 'nothing was recorded for the failed launch');
  });

  it('checks a webhook delivery against the exact bytes GitHub signed, not a re-encoding of them', async () => {
    // Spacing and key order that JSON.stringify of the parsed body would not give back.
    const body = '{ "action" : "created",\n  "issue": {"number": 3, "pull_request": {}},\n  "comment": {"body": "/try", "user": {"type": "User", "login": "rsc"}},\n  "repository": {"full_name": "acme/demo"} }';
    const deliver = async (signature: string) =>
      (await fetch(webhook, { method: 'POST', headers: { 'content-type': 'application/json', 'x-github-event': 'issue_comment', 'x-hub-signature-256': signature }, body })).status;
    assert.equal(await deliver(await sign('not the secret', body)), 401);
    assert.equal(await deliver(await sign(webhookSecret, body)), 202);
    const [request] = await h.take('trybot');
    assert.deepEqual(JSON.parse(Buffer.from(request?.data ?? []).toString()), { v: 1, repo: 'demo', commit: 'e'.repeat(40), pullRequest: 3, base: 'f'.repeat(40), requester: 'rsc', via: 'comment' });
  });

  it('serves the dashboard as an HTTP function', async () => {
    const response = await fetch(`${dashboard}/api/grid`);
    assert.equal(response.status, 200);
    const grid = (await response.json()) as { grids: Array<{ commits: Array<{ hash: string }> }> };
    assert.equal(grid.grids[0]?.commits[0]?.hash, commit);
    assert.equal((await fetch(`${dashboard}/nowhere`)).status, 404);
  });
});
