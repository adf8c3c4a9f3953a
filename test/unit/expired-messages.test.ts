import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseConfig } from '../../shared/core/config/config.ts';
import { buildId } from '../../shared/core/model/ids.ts';
import { collections } from '../../shared/ports/state.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { startLocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { createFakeCompute } from '../fakes/fake-compute.ts';
import { createFakeSource } from '../fakes/fake-source.ts';
import { waitUntil } from '../helpers/wait.ts';

describe('a message whose handler never answers, on one machine', () => {
  it('ends its build with the reason once its last lease runs out, as the handler would on giving up', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-expired-'));
    const fake = createFakeSource();
    const commit = fake.push('demo', 'main');
    // The tarball never comes, until the test lets it: plan reads a go-module commit's tarball, so plan hangs.
    let release = (): void => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    const source = { ...fake, archive: async (...args: Parameters<typeof fake.archive>) => (await released, fake.archive(...args)) };
    const catalog = parseConfig(
      { repos: [{ name: 'demo', url: '/demo', branches: ['main'], builders: ['mod'] }], builders: { mod: { type: 'go-module' } } },
      'test-config.json',
    );
    const compute = createFakeCompute({ onExit() {} });
    const runtime = await startLocalRuntime({
      dataDir: join(dir, 'data'),
      catalog,
      logger: silentLogger,
      pollIntervalMs: 0,
      port: 0,
      source,
      compute: async () => compute,
      subscription: { ackDeadlineMs: 200, maxAttempts: 2, minBackoffMs: 10, maxBackoffMs: 10 },
    });
    try {
      await runtime.pollNow();
      const id = buildId('demo', commit, 'mod');
      await waitUntil(async () => (await runtime.deps.state.get(collections.builds, id))?.status === 'infra-failure', 'the hung plan gives up', { timeoutMs: 30_000 });
      const build = await runtime.deps.state.get(collections.builds, id);
      assert.match(build?.reason ?? '', /could not plan: ack deadline exceeded 2 times/);
      assert.equal(compute.started.length, 0);
    } finally {
      release();
      await runtime.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
