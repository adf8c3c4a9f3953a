import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseConfig } from '../../shared/config/config.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { collections } from '../../shared/ports/state.ts';
import { startLocalRuntime } from '../../shared/runtime/local-runtime.ts';
import { createTestRepo } from '../helpers/git-repo.ts';
import { processesWithEnv } from '../helpers/processes.ts';

describe('a runtime stopped in the middle of a build', () => {
  let dir: string | undefined;
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('kills the worker, and after a restart the build reaches exactly one verdict on a fresh attempt', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hermetic-restart-'));
    const repo = await createTestRepo(join(dir, 'repo'));
    await repo.commit({ 'wait.sh': '#!/bin/sh\nif [ "$HERMETIC_ATTEMPT" = 1 ]; then sleep 600; fi\necho done\n' }, 'wait', { executable: ['wait.sh'] });
    const catalog = parseConfig(
      { repos: [{ name: 'repo', url: repo.path, builders: ['wait'] }], builders: { wait: { type: 'command', command: './wait.sh' } } },
      'restart-config.json',
    );
    const options = { dataDir: join(dir, 'data'), catalog, logger: silentLogger, pollIntervalMs: 0, port: 0 };

    const first = await startLocalRuntime(options);
    const [requested] = (await first.pollNow()).requested;
    assert.ok(requested);
    for (let i = 0; i < 200 && (await first.compute.list()).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal((await first.compute.list()).length, 1, 'the worker is running');
    await first.stop();
    assert.deepEqual(await processesWithEnv('HOME', options.dataDir), [], 'stopping killed the worker');

    const second = await startLocalRuntime(options);
    try {
      await second.waitForBuilds([requested.buildId], 60_000);
      const build = await second.deps.state.get(collections.builds, requested.buildId);
      assert.equal(build?.status, 'passed');
      assert.equal(build?.attempts, 2);
      const tasks = await second.deps.state.query(collections.tasks, { where: { buildId: requested.buildId } });
      assert.deepEqual(tasks.map((task) => task.status).sort(), ['lost', 'passed']);
    } finally {
      await second.stop();
    }
  });
});
