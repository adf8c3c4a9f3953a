import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildId } from '../../shared/model/ids.ts';
import { topics, type TryRequested } from '../../shared/model/messages.ts';
import { publishMessage } from '../../shared/pipeline/publish.ts';
import { collections } from '../../shared/ports/state.ts';
import { fetchDashboard } from '../helpers/dashboard-client.ts';
import { createPipelineHarness, type PipelineHarness } from '../helpers/pipeline-harness.ts';

const policy = { trusted: { users: ['rsc'] }, trustCacheSeconds: 60, maxWaitingPerRequester: 3 };

/** Publishes a trybot request and runs the pipeline until it is quiet. */
async function request(h: PipelineHarness, fields: Partial<TryRequested> & { commit: string; requester: string }): Promise<void> {
  await publishMessage(h.queue, topics.tryRequested, { v: 1, repo: 'demo', pullRequest: 7, ...fields });
  await h.drain();
}

/** The dashboard's JSON at `path`, which must answer 200. */
async function json<T>(h: PipelineHarness, path: string): Promise<T> {
  const response = await fetchDashboard(h, path);
  assert.equal(response.status, 200, response.body);
  assert.equal(response.type, 'application/json');
  return JSON.parse(response.body) as T;
}

describe('dashboard: the grid', () => {
  it('keeps a commit\'s post-submit cells when the same commit is also tried, and adds no column for a trybot\'s builder', async () => {
    const h = await createPipelineHarness({ trybots: policy });
    const commit = h.source.push('demo', 'main');
    await h.poll();
    await h.drain();
    await request(h, { commit, requester: 'rsc' });
    await request(h, { commit, requester: 'rsc', builders: ['mod'], mode: { kind: 'make' } });
    const tried = (await h.state.query(collections.builds)).filter((build) => build.trybot === true);
    assert.deepEqual(tried.map((build) => build.builder).sort(), ['mod', 'ok'], 'the commit has trybot builds beside its post-submit one');
    const { grids } = await json<{ grids: Array<{ builders: string[]; commits: Array<{ hash: string; builds: Record<string, { id: string }> }> }> }>(h, '/api/grid');
    assert.deepEqual(grids[0]?.builders, ['ok']);
    const row = grids[0]?.commits.find((entry) => entry.hash === commit);
    assert.deepEqual(Object.keys(row?.builds ?? {}), ['ok']);
    assert.equal(row?.builds.ok?.id, buildId('demo', commit, 'ok'));
  });
});
