import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import { registerFunctions } from '../../functions/index.ts';
import { messagePublishedEvent } from '../../functions/pubsub-function.ts';
import { buildId } from '../../shared/model/ids.ts';
import { collections } from '../../shared/ports/state.ts';
import { createPipelineHarness, type PipelineHarness } from '../helpers/pipeline-harness.ts';

/** Starts functions-framework's own server for one registered function on a free port. */
async function serve(name: string): Promise<{ url: string; server: Server }> {
  const server = getTestServer(name);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

function pubsubEvent(topic: string, data: unknown, messageId = 'm-1') {
  return messagePublishedEvent({
    project: 'p',
    topic,
    subscription: `${topic}-sub`,
    messageId,
    data: Buffer.from(typeof data === 'string' ? data : JSON.stringify(data)),
    attributes: {},
    publishedAt: Date.parse('2026-11-28T00:00:00Z'),
    deliveryAttempt: 1,
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
  let dashboard: string;
  let build: string;
  let commit: string;

  before(async () => {
    h = await createPipelineHarness();
    registerFunctions(async () => h.functions);
    for (const [name, set] of [
      ['plan', (url: string) => (plan = url)],
      ['launch', (url: string) => (launch = url)],
      ['dashboard', (url: string) => (dashboard = url)],
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

  it('answers 500 on a retryable failure, so the platform redelivers', async () => {
    const [ready] = await h.take('launch');
    assert.ok(ready);
    await h.compute.close(); // a compute that refuses to start workers
    const event = pubsubEvent('task-ready', JSON.parse(Buffer.from(ready.data).toString()) as unknown, 'm-ready');
    assert.equal(await post(launch, event), 500);
    const task = (await h.state.query(collections.tasks, { where: { buildId: build } }))[0];
    assert.equal(task?.status, 'pending', 'nothing was recorded for the failed launch');
  });

  it('serves the dashboard as an HTTP function', async () => {
    const response = await fetch(`${dashboard}/api/grid`);
    assert.equal(response.status, 200);
    const grid = (await response.json()) as { grids: Array<{ commits: Array<{ hash: string }> }> };
    assert.equal(grid.grids[0]?.commits[0]?.hash, commit);
    assert.equal((await fetch(`${dashboard}/nowhere`)).status, 404);
  });
});
