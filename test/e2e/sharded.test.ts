import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { parseConfig } from '../../shared/core/config/config.ts';
import { ensureImages } from '../../shared/images/build-images.ts';
import { buildId } from '../../shared/core/model/ids.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { startLocalRuntime, type LocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { createTestRepo } from '../helpers/git-repo.ts';
import { needsGo } from '../helpers/toolchain.ts';
import { describeError } from '../../shared/core/errors.ts';

const noDocker = await new Docker().ping().then(
  () => false as const,
  (error: unknown) => `needs a Docker engine (${describeError(error)}); .ci/run starts one`,
);

const testFile = (pkg: string, body: string) => `package ${pkg}\n\nimport (\n\t"os"\n\t"testing"\n)\n\nvar _ = os.Getenv\n\n${body}\n`;

/** A module of six packages: four that pass, one that always fails, one whose test fails only on its first run. */
const module = {
  'go.mod': 'module example.com/shards\n\ngo 1.19\n',
  'alpha/alpha.go': 'package alpha\n\n// One is one.\nfunc One() int { return 1 }\n',
  'alpha/alpha_test.go': testFile('alpha', 'func TestOne(t *testing.T) {\n\tif One() != 1 {\n\t\tt.Fatal("one")\n\t}\n}'),
  'bravo/bravo_test.go': testFile('bravo', 'func TestB1(t *testing.T) {}\n\nfunc TestB2(t *testing.T) {}'),
  'charlie/charlie_test.go': testFile('charlie', 'func TestBroken(t *testing.T) {\n\tt.Fatal("charlie is broken on every run")\n}'),
  'delta/delta_test.go': testFile(
    'delta',
    'func TestFlaky(t *testing.T) {\n\tif os.Getenv("HERMETIC_RETRY") == "" {\n\t\tt.Fatal("fails on its first run only")\n\t}\n}',
  ),
  'echo/echo.go': 'package echo\n\n// Nothing to test here.\nconst Name = "echo"\n',
  'foxtrot/foxtrot_test.go': testFile('foxtrot', 'func TestF(t *testing.T) {}'),
  'golf/golf_test.go': testFile('golf', 'func TestG(t *testing.T) {}'),
};
const listingOrder = ['alpha', 'bravo', 'charlie', 'delta', 'foxtrot', 'golf'].map((pkg) => `example.com/shards/${pkg}`);

interface ApiBuild {
  build: { status: string; reason?: string; logUrl: string; tests?: { units: number; flaky: number; failed: number } };
  sharding: { phase: string; shardTaskIds: string[]; units: Array<{ name: string; verdict: string; retry?: { status: string } }> };
}

for (const { hostType, skip } of [
  { hostType: 'linux-amd64', skip: noDocker },
  { hostType: 'host', skip: needsGo },
]) {
  describe(`sharded builds end to end on ${hostType}`, { skip }, () => {
    let dir: string;
    let runtime: LocalRuntime;
    let commit: string;

    before(async () => {
      if (hostType !== 'host') await ensureImages({ docker: new Docker(), hostTypes: [hostType] });
      dir = await mkdtemp(join(tmpdir(), 'hermetic-sharded-'));
      const repo = await createTestRepo(join(dir, 'shards'));
      commit = await repo.commit(module, 'six packages, one broken, one flaky');
      const common = { type: 'go-module', hostType, timeoutSeconds: 300 };
      runtime = await startLocalRuntime({
        dataDir: join(dir, 'data'),
        catalog: parseConfig(
          {
            repos: [{ name: 'shards', url: repo.path, builders: ['three', 'one'] }],
            builders: { three: { ...common, shards: 3 }, one: { ...common, shards: 1 } },
          },
          'sharded-config.json',
        ),
        logger: silentLogger,
        pollIntervalMs: 0,
        port: 0,
      });
      const poll = await runtime.pollNow();
      await runtime.waitForBuilds(poll.requested.map((build) => build.buildId), 280_000);
    });

    after(async () => {
      await runtime?.stop();
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });

    const api = async (builder: string): Promise<ApiBuild> =>
      (await (await fetch(`${runtime.url}/api/builds/${buildId('shards', commit, builder)}`)).json()) as ApiBuild;

    it('reaches the same verdict for every unit sharded three ways as in one shard', async () => {
      const three = await api('three');
      const one = await api('one');
      assert.equal(three.sharding.shardTaskIds.length, 3);
      assert.equal(one.sharding.shardTaskIds.length, 1);
      const verdicts = (build: ApiBuild) => Object.fromEntries(build.sharding.units.map((unit) => [unit.name, unit.verdict]));
      assert.deepEqual(verdicts(three), verdicts(one));
      assert.deepEqual(verdicts(three), {
        'example.com/shards/alpha': 'passed',
        'example.com/shards/bravo': 'passed',
        'example.com/shards/charlie': 'failed',
        'example.com/shards/delta': 'flaky',
        'example.com/shards/foxtrot': 'passed',
        'example.com/shards/golf': 'passed',
      });
      for (const build of [three, one]) {
        assert.equal(build.build.status, 'failed', 'one unit fails on every run');
        assert.match(build.build.reason ?? '', /1 of 6 units failed: example\.com\/shards\/charlie; 1 of 6 units flaky/);
      }
    });

    it('reports a test that fails only on its first run as flaky, not passed and not failed', async () => {
      const three = await api('three');
      const delta = three.sharding.units.find((unit) => unit.name === 'example.com/shards/delta');
      assert.equal(delta?.verdict, 'flaky');
      assert.equal(delta?.retry?.status, 'passed');
      assert.equal(three.build.tests?.flaky, 1);
    });

    it('writes one merged log in listing order that keeps both runs of a retried unit and ends with the times', async () => {
      const three = await api('three');
      const log = await (await fetch(three.build.logUrl)).text();
      const firstRuns = log.slice(0, log.indexOf('##### Failed units'));
      const order = [...firstRuns.matchAll(/^(?:ok|FAIL)\s+(example\.com\/shards\/\w+)/gm)].map((match) => match[1]);
      assert.deepEqual(order, listingOrder);
      assert.match(log, /fails on its first run only/, 'the failing first run of the flaky test is kept');
      assert.match(log, /--- example\.com\/shards\/delta: passed on the retry/);
      assert.match(log, /^FLAKY example\.com\/shards\/delta: failed on shard-\d \(http:\/\/127\.0\.0\.1:\d+\/log\/[0-9a-f]{24}\), then passed on the retry/m);
      assert.match(log.trimEnd().split('\n').at(-1) ?? '', /^wall time [\d.ms]+, aggregate time [\d.ms]+, time saved /);
    });
  });
}
