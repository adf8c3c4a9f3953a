import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { blobKeys } from '../../shared/core/model/wire.ts';
import { fetchDashboard } from '../helpers/dashboard-client.ts';
import { createPipelineHarness } from '../helpers/pipeline-harness.ts';
import { finish, launchOne } from '../helpers/pipeline-steps.ts';

/** A harness with one finished build of `demo`, whose task has a log. */
async function oneBuild() {
  const h = await createPipelineHarness();
  const { buildId, taskId } = await launchOne(h);
  await h.blobs.put(blobKeys.logChunk(taskId, 0), '<script>alert(1)</script>\n');
  await finish(h, taskId, 'passed');
  return { h, buildId, taskId };
}

describe('dashboard: what a browser is told', () => {
  it('sends nosniff, a content security policy and no referrer with every response: pages, JSON, logs and errors', async () => {
    const { h, buildId, taskId } = await oneBuild();
    const paths = ['/', `/build/${buildId}`, '/trybots', '/dead-letters', '/api/grid', `/api/builds/${buildId}`, `/log/${taskId}`, '/nowhere', '/?limit=abc'];
    for (const path of paths) {
      const response = await fetchDashboard(h, path);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff', path);
      assert.match(response.headers.get('content-security-policy') ?? '', /^default-src 'none'; /, path);
      assert.match(response.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, path);
      assert.equal(response.headers.get('referrer-policy'), 'no-referrer', path);
    }
    const log = await fetchDashboard(h, `/log/${taskId}`);
    assert.equal(log.type, 'text/plain; charset=utf-8');
    assert.match(log.body, /<script>/, 'a log is served as it was written, as text');
  });

  it("lets each page's own style element through, by its hash, and the pages use nothing else the policy blocks", async () => {
    const { h, buildId } = await oneBuild();
    for (const path of ['/', `/build/${buildId}`, '/trybots', '/dead-letters']) {
      const response = await fetchDashboard(h, path);
      const styles = [...response.body.matchAll(/<style>([^<]*)<\/style>/g)].map((match) => match[1] ?? '');
      assert.equal(styles.length, 1, path);
      const hash = createHash('sha256').update(styles[0] ?? '').digest('base64');
      assert.match(response.headers.get('content-security-policy') ?? '', new RegExp(`style-src 'sha256-${hash.replace(/[+/]/g, '\\$&')}'`), path);
      assert.doesNotMatch(response.body, /<script|<img|<form|<iframe|<link|\sstyle=|\son[a-z]+=/i, path);
    }
  });
});

describe('dashboard: ?limit=', () => {
  it('answers 400 naming the parameter for anything but a whole number from 1 to 500', async () => {
    const { h } = await oneBuild();
    for (const limit of ['-1', 'abc', '0', '501', '1.5', '', '1e2', ' 5']) {
      for (const path of ['/', '/trybots', '/api/grid', '/api/builds', '/api/trybots']) {
        const response = await fetchDashboard(h, `${path}?limit=${encodeURIComponent(limit)}`);
        assert.equal(response.status, 400, `${path}?limit=${limit}`);
        const message = path.startsWith('/api/') ? (JSON.parse(response.body) as { error: string }).error : response.body;
        assert.match(message, new RegExp(`^limit=${limit.replace(/[.]/g, '\\.')}: expected a whole number from 1 to 500`), `${path}?limit=${limit}`);
      }
    }
  });

  it('takes 1 and 500, and the default without one', async () => {
    const { h } = await oneBuild();
    for (const limit of ['?limit=1', '?limit=500', '']) {
      const response = await fetchDashboard(h, `/api/builds${limit}`);
      assert.equal(response.status, 200, limit);
      assert.equal((JSON.parse(response.body) as { builds: unknown[] }).builds.length, 1, limit);
    }
  });
});
