import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { parseConfig } from '../../shared/core/config/config.ts';
import { ensureImages } from '../../shared/images/build-images.ts';
import type { Build, Task } from '../../shared/core/model/types.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { collections } from '../../shared/ports/state.ts';
import { startLocalRuntime, type LocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { createTestRepo, type TestRepo } from '../helpers/git-repo.ts';
import { serveGoProxy, writeGoProxy, type GoProxy, type ServedGoProxy } from '../helpers/go-proxy.ts';
import { needsGo } from '../helpers/toolchain.ts';
import { describeError } from '../../shared/core/errors.ts';

// A module with one dependency, served by a proxy the test makes: nothing outside the machine is needed.
const dep = {
  path: 'example.com/dep',
  version: 'v1.0.0',
  files: { 'go.mod': 'module example.com/dep\n\ngo 1.18\n', 'dep.go': 'package dep\n\n// Answer answers.\nfunc Answer() int { return 42 }\n' },
};
const goMod = 'module example.com/app\n\ngo 1.18\n\nrequire example.com/dep v1.0.0\n';
const app = (goSum: string) => ({
  'go.mod': goMod,
  'go.sum': goSum,
  'app.go': 'package app\n\nimport "example.com/dep"\n\n// Double doubles the answer.\nfunc Double() int { return 2 * dep.Answer() }\n',
  'app_test.go': 'package app\n\nimport "testing"\n\nfunc TestDouble(t *testing.T) {\n\tif Double() != 84 {\n\t\tt.Fatal(Double())\n\t}\n}\n',
  'sub/sub.go': 'package sub\n\nimport "example.com/dep"\n\n// Half halves the answer.\nfunc Half() int { return dep.Answer() / 2 }\n',
  'sub/sub_test.go': 'package sub\n\nimport "testing"\n\nfunc TestHalf(t *testing.T) {\n\tif Half() != 21 {\n\t\tt.Fatal(Half())\n\t}\n}\n',
});
/** The dependency's go.sum with its zip's hash changed: what a proxy serving other bits than go.sum recorded looks like. */
const tampered = (goSum: string) => goSum.replace(/ h1:(.)/, (_, first: string) => ` h1:${first === 'A' ? 'B' : 'A'}`);
const vendored = {
  'vendor/modules.txt': '# example.com/dep v1.0.0\n## explicit; go 1.18\nexample.com/dep\n',
  'vendor/example.com/dep/dep.go': dep.files['dep.go'],
};

interface World {
  runtime: LocalRuntime;
  repo: TestRepo;
}

async function buildAll(world: World): Promise<Build[]> {
  const poll = await world.runtime.pollNow();
  assert.deepEqual(poll.errors, []);
  const ids = poll.requested.map((build) => build.buildId);
  await world.runtime.waitForBuilds(ids, 300_000);
  return Promise.all(ids.map(async (id) => (await world.runtime.deps.state.get(collections.builds, id)) as Build));
}

async function tasksOf(world: World, build: Build): Promise<Task[]> {
  return world.runtime.deps.state.query(collections.tasks, { where: { buildId: build.id } });
}

describe('Go modules with dependencies, in the process sandbox, from a proxy on a loopback port', { skip: needsGo }, () => {
  let dir: string;
  let proxy: GoProxy;
  let served: ServedGoProxy;
  let world: World;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hermetic-modules-'));
    proxy = await writeGoProxy(join(dir, 'proxy'), [dep]);
    served = await serveGoProxy(proxy.dir);
    const repo = await createTestRepo(join(dir, 'app'));
    const config = parseConfig(
      {
        repos: [{ name: 'app', url: repo.path, builders: ['go'] }],
        builders: { go: { type: 'go-module', hostType: 'host', goProxy: served.url, timeoutSeconds: 300 } },
      },
      'modules-config.json',
    );
    const runtime = await startLocalRuntime({ dataDir: join(dir, 'data'), catalog: config, logger: silentLogger, pollIntervalMs: 0, port: 0, containers: 'off' });
    world = { runtime, repo };
  });

  after(async () => {
    await world?.runtime.stop();
    await served?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('fetches a module\'s dependency in a task of its own, then builds and tests offline', async () => {
    await world.repo.commit(app(proxy.goSum), 'app: use dep');
    const [build] = await buildAll(world);
    assert.equal(build?.status, 'passed', build?.reason);
    assert.equal(build?.modules?.phase, 'ready');
    assert.equal(build?.modules?.reused, undefined);
    const steps = (await tasksOf(world, build!)).map((task) => `${task.step}:${task.status}`).sort();
    assert.deepEqual(steps, ['build:passed', 'modules:passed']);
    assert.ok(served.requests() > 0, 'the fetch task asked the proxy');
    const page = await (await fetch(`${world.runtime.url}/build/${build!.id}`)).text();
    assert.match(page, /<h2>modules<\/h2><p>module cache [0-9a-f]{12}: fetched by this build<\/p>/);
    assert.match(page, /go list -deps -test \.\/\.\.\.: 0 in/);
  });

  it('fetches nothing for a later build with the same go.mod and go.sum', async () => {
    const before = served.requests();
    await world.repo.commit({ 'app.go': app(proxy.goSum)['app.go'].replace('// Double doubles', '// Double still doubles') }, 'app: same deps, other code');
    const [build] = await buildAll(world);
    assert.equal(build?.status, 'passed', build?.reason);
    assert.equal(build?.modules?.reused, true);
    assert.deepEqual((await tasksOf(world, build!)).map((task) => task.step), ['build']);
    assert.equal(served.requests(), before, 'no request reached the proxy');
    const page = await (await fetch(`${world.runtime.url}/build/${build!.id}`)).text();
    assert.match(page, /module cache [0-9a-f]{12}: reused from an earlier build with the same module files/);
  });

  it('fails a go.sum that does not match what the proxy serves, naming the module', async () => {
    await world.repo.commit({ 'go.sum': tampered(proxy.goSum) }, 'go.sum: tamper');
    const [build] = await buildAll(world);
    assert.equal(build?.status, 'failed');
    assert.match(build?.reason ?? '', /^modules: go list .* exited 1: go\.sum does not match what the module proxy serves for example\.com\/dep@v1\.0\.0/);
  });

  it('fails a go.sum that lacks an entry rather than fetch it silently', async () => {
    await world.repo.commit({ 'go.sum': '' }, 'go.sum: empty');
    const [build] = await buildAll(world);
    assert.equal(build?.status, 'failed');
    assert.match(build?.reason ?? '', /go\.sum has no entry for .*example\.com\/dep/);
  });

  it('builds a vendored module with no fetch task', async () => {
    const before = served.requests();
    await world.repo.commit({ ...vendored, 'go.sum': proxy.goSum }, 'vendor dep');
    const [build] = await buildAll(world);
    assert.equal(build?.status, 'passed', build?.reason);
    assert.equal(build?.modules, undefined);
    assert.deepEqual((await tasksOf(world, build!)).map((task) => task.step), ['build']);
    assert.equal(served.requests(), before);
  });

  it('calls a proxy it cannot reach an infra failure, not the commit\'s', async () => {
    await served.close();
    await world.repo.git('rm', '-r', '--quiet', 'vendor');
    await world.repo.commit({ 'go.mod': `${goMod}// the proxy is gone\n` }, 'unvendor');
    const [last] = await buildAll(world);
    assert.equal(last?.status, 'infra-failure', last?.reason);
    assert.match(last?.reason ?? '', /the module proxy could not be reached/);
  });
});

const docker = new Docker();
const noDocker = await docker.ping().then(
  () => false as const,
  (error: unknown) => `needs a Docker engine (${describeError(error)}); .ci/run starts one`,
);

describe('Go modules with dependencies, in containers, from a file:// proxy', { skip: noDocker }, () => {
  let dir: string;
  let proxy: GoProxy;
  let world: World;

  before(async () => {
    await ensureImages({ docker, hostTypes: ['linux-amd64'] });
    dir = await mkdtemp(join(tmpdir(), 'hermetic-modules-'));
    proxy = await writeGoProxy(join(dir, 'proxy'), [dep]);
    const repo = await createTestRepo(join(dir, 'app'));
    const builder = { type: 'go-module', hostType: 'linux-amd64', goProxy: proxy.url, goSumDb: 'off', timeoutSeconds: 300 } as const;
    const config = parseConfig(
      {
        repos: [{ name: 'app', url: repo.path, builders: ['whole', 'sharded'] }],
        builders: { whole: builder, sharded: { ...builder, shards: 2 } },
      },
      'modules-config.json',
    );
    const runtime = await startLocalRuntime({ dataDir: join(dir, 'data'), catalog: config, logger: silentLogger, pollIntervalMs: 0, port: 0 });
    world = { runtime, repo };
  });

  after(async () => {
    await world?.runtime.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('fetches once per go.sum, and builds whole and in shards offline', async () => {
    await world.repo.commit(app(proxy.goSum), 'app: use dep');
    const builds = await buildAll(world);
    for (const build of builds) assert.equal(build.status, 'passed', `${build.builder}: ${build.reason}`);
    const sharded = builds.find((build) => build.builder === 'sharded');
    assert.equal(sharded?.sharding?.summary?.units, 2, 'both packages ran as units, each offline with the snapshot\'s modules');
    const fetches = (await Promise.all(builds.map((build) => tasksOf(world, build)))).flat().filter((task) => task.step === 'modules');
    // The two builders build the same packages the same way: they share one cache (fetched once, or twice if both
    // planned before either fetch landed).
    assert.ok(fetches.length >= 1 && fetches.length <= 2, `${fetches.length} fetch tasks`);
  });

  it('fails a tampered go.sum in the container too, naming the module', async () => {
    await world.repo.commit({ 'go.sum': tampered(proxy.goSum) }, 'go.sum: tamper');
    const builds = await buildAll(world);
    for (const build of builds) {
      assert.equal(build.status, 'failed');
      assert.match(build.reason ?? '', /go\.sum does not match what the module proxy serves for example\.com\/dep@v1\.0\.0/);
    }
  });
});
