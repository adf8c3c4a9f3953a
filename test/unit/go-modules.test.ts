import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { goModuleFinding } from '../../shared/agent/go-findings.ts';
import { parseConfig } from '../../shared/core/config/config.ts';
import { ConfigError } from '../../shared/core/errors.ts';
import type { Build, GoModules, Task } from '../../shared/core/model/types.ts';
import { blobKeys, TaskSpec, type TaskResult } from '../../shared/core/model/wire.ts';
import { fetchEgress, moduleFilesOf, moduleNeedsOf, proxyDirectories, type ModuleFiles } from '../../shared/core/pipeline/go-modules.ts';
import { collections } from '../../shared/ports/state.ts';
import { createFakeSource } from '../fakes/fake-source.ts';
import { createPipelineHarness, type PipelineHarness } from '../helpers/pipeline-harness.ts';
import { finish, land, result } from '../helpers/pipeline-steps.ts';

const modules: GoModules = { proxy: 'https://proxy.golang.org', sumDb: 'sum.golang.org', packages: ['./...'] };
const goMod = 'module example.com/app\n\ngo 1.18\n\nrequire example.com/dep v1.0.0\n';
const goSum = 'example.com/dep v1.0.0 h1:kobUdUh4HNGGxigDW5tLXtZjiVqYCtpMplBP0jvRJa8=\nexample.com/dep v1.0.0/go.mod h1:WSQVVkzisfSKy5IAGHvpHm0MKSrZhF0Zc7f0B3QEwJc=\n';

async function filesOf(files: Record<string, string>): Promise<ModuleFiles> {
  const source = createFakeSource();
  const commit = source.commit('r', 'main', files);
  return moduleFilesOf(await source.archive({ name: 'r', url: '/r', branches: ['main'], builders: [], backfill: 1 }, commit));
}

describe('go modules: what a tree needs', () => {
  it('reads every go.mod and go.sum from the tarball, outside vendor/ and testdata/', async () => {
    const tree = await filesOf({
      'go.mod': goMod,
      'go.sum': goSum,
      'tools/go.mod': 'module example.com/tools\n',
      'testdata/go.mod': 'module ignored\n',
      'vendor/example.com/x/go.mod': 'module ignored\n',
      'main.go': 'package main\n',
    });
    assert.deepEqual(tree.files.map((file) => file.path), ['go.mod', 'go.sum', 'tools/go.mod']);
    assert.equal(tree.files[0]?.text, goMod);
    assert.equal(tree.vendored, false);
  });

  it('fetches only for a root module that requires something and does not vendor', async () => {
    const needs = async (files: Record<string, string>) => moduleNeedsOf(await filesOf(files), modules, { env: {} }, 'linux-amd64');
    assert.deepEqual(await needs({ 'main.go': 'package main\n' }), { kind: 'none', why: 'no go.mod at the root' });
    assert.deepEqual(await needs({ 'go.mod': 'module m\n\ngo 1.18\n' }), { kind: 'none', why: 'go.mod requires no module' });
    assert.deepEqual(await needs({ 'go.mod': goMod, 'vendor/modules.txt': '# example.com/dep v1.0.0\n' }), { kind: 'none', why: 'vendored (vendor/modules.txt)' });
    assert.equal((await needs({ 'go.mod': goMod, 'go.sum': goSum })).kind, 'fetch');
    assert.equal((await needs({ 'go.mod': 'module m\n\ngo 1.18\n', 'go.work': 'go 1.18\n\nuse .\n' })).kind, 'fetch');
  });

  it('keys the cache by the module files and how they are fetched, nothing else', async () => {
    const key = (tree: ModuleFiles, over: Partial<GoModules> = {}, hostType = 'linux-amd64', env: Record<string, string> = {}) => {
      const needs = moduleNeedsOf(tree, { ...modules, ...over }, { env }, hostType);
      return needs.kind === 'fetch' ? needs.key : assert.fail('expected a fetch');
    };
    const base = await filesOf({ 'go.mod': goMod, 'go.sum': goSum, 'main.go': 'package main\n' });
    assert.equal(key(base), key(await filesOf({ 'go.mod': goMod, 'go.sum': goSum, 'main.go': 'package main // other code\n' })));
    assert.notEqual(key(base), key(await filesOf({ 'go.mod': goMod, 'go.sum': goSum.replace('kobU', 'kobV') })));
    assert.notEqual(key(base), key(base, { proxy: 'https://goproxy.example' }));
    assert.notEqual(key(base), key(base, { sumDb: 'off' }));
    assert.notEqual(key(base), key(base, { packages: ['./cmd/...'] }));
    assert.notEqual(key(base), key(base, {}, 'linux-386'));
    assert.notEqual(key(base), key(base, {}, 'linux-amd64', { GOFLAGS: '-tags=integration' }));
  });

  it('knows where a fetch connects: its proxies and the checksum database, unless it goes direct', () => {
    assert.deepEqual(fetchEgress(modules), [{ host: 'proxy.golang.org', port: 443 }, { host: 'sum.golang.org', port: 443 }]);
    assert.deepEqual(fetchEgress({ ...modules, proxy: 'http://mirror.internal:3000|file:///srv/m', sumDb: 'off' }), [{ host: 'mirror.internal', port: 3000 }]);
    assert.deepEqual(fetchEgress({ ...modules, sumDb: 'sum.example+abcd https://sumdb.example:8443/db' }), [{ host: 'proxy.golang.org', port: 443 }, { host: 'sumdb.example', port: 8443 }]);
    assert.equal(fetchEgress({ ...modules, proxy: 'https://proxy.golang.org,direct' }), undefined);
  });

  it('finds the local directories of file:// proxies', () => {
    assert.deepEqual(proxyDirectories('file:///srv/mirror,https://proxy.golang.org|file:///other%20dir,direct'), ['/srv/mirror', '/other dir']);
    assert.deepEqual(proxyDirectories('https://proxy.golang.org'), []);
  });
});

describe('go modules: what a failed step said', () => {
  it('blames the commit for a go.sum that does not verify, naming the module', () => {
    const output = 'go: downloading example.com/dep v1.0.0\nverifying example.com/dep@v1.0.0: checksum mismatch\n\tdownloaded: h1:a=\n\tgo.sum:     h1:b=\n\nSECURITY ERROR\n';
    assert.deepEqual(goModuleFinding(output, true), { blame: 'commit', text: 'go.sum does not match what the module proxy serves for example.com/dep@v1.0.0 (checksum mismatch)' });
    assert.deepEqual(goModuleFinding('verifying example.com/dep@v1.0.0/go.mod: checksum mismatch\n', false)?.text, 'go.sum does not match what the module proxy serves for example.com/dep@v1.0.0/go.mod (checksum mismatch)');
  });

  it('blames the commit for a go.sum that lacks an entry (Go 1.19 and 1.24 wording)', () => {
    const old = 'app.go:3:8: missing go.sum entry for module providing package example.com/dep (imported by example.com/app); to add:\n\tgo get example.com/app\n';
    assert.deepEqual(goModuleFinding(old, true), { blame: 'commit', text: 'go.sum has no entry for module providing package example.com/dep (imported by example.com/app)' });
    const go124 = 'go: example.com/app imports\n\texample.com/dep: missing go.sum entry for go.mod file; to add it:\n\tgo mod download example.com/dep\n';
    assert.equal(goModuleFinding(go124, true)?.text, 'go.sum has no entry for go.mod file');
  });

  it('blames the environment for a proxy out of reach, but only in the fetch step', () => {
    const refused = 'go: example.com/dep@v1.0.0: Get "http://127.0.0.1:9/example.com/dep/@v/v1.0.0.mod": dial tcp 127.0.0.1:9: connect: connection refused\n';
    assert.equal(goModuleFinding(refused, true)?.blame, 'environment');
    assert.match(goModuleFinding(refused, true)?.text ?? '', /^the module proxy could not be reached: go: example\.com\/dep@v1\.0\.0: Get .*connection refused$/);
    assert.equal(goModuleFinding('go: example.com/dep@v1.0.0: reading https://proxy.golang.org/example.com/dep/@v/v1.0.0.mod: 502 Bad Gateway\n', true)?.blame, 'environment');
    // A test's own server refusing a connection says nothing about the proxy.
    assert.equal(goModuleFinding('--- FAIL: TestServe\n    dial tcp 127.0.0.1:8080: connect: connection refused\n', false), undefined);
    assert.equal(goModuleFinding('--- FAIL: TestAdd\n', true), undefined);
  });
});

describe('go modules: config', () => {
  const builder = (fields: Record<string, unknown>) => parseConfig({ builders: { go: { type: 'go-module', ...fields } } }, 'c.json').builders.get('go');

  it('fetches from proxy.golang.org, checked against sum.golang.org, unless told otherwise', () => {
    assert.deepEqual(builder({})?.modules, { proxy: 'https://proxy.golang.org', sumDb: 'sum.golang.org', packages: ['./...'] });
    assert.deepEqual(builder({ goProxy: 'file:///srv/mirror|https://goproxy.example', goSumDb: 'off', packages: ['./cmd/...'] })?.modules, {
      proxy: 'file:///srv/mirror|https://goproxy.example',
      sumDb: 'off',
      packages: ['./cmd/...'],
    });
    assert.equal(builder({ goProxy: 'off' })?.modules, undefined, 'off: nothing is fetched, as before');
    assert.equal(builder({})?.env['GOPROXY'], 'off', 'every other step stays offline');
  });

  it('refuses a GOPROXY value go would not take, naming the field', () => {
    for (const goProxy of ['', 'ftp://mirror', 'file://relative/dir', 'https://a b', 'off,direct']) {
      assert.throws(() => builder({ goProxy }), (error: unknown) => error instanceof ConfigError && /builders\.go\.goProxy: expected a GOPROXY value/.test(error.message), goProxy);
    }
    assert.throws(() => builder({ goSumDb: 'two words here' }), /builders\.go\.goSumDb/);
    assert.throws(() => parseConfig({ builders: { c: { type: 'command', command: 'true', goProxy: 'off' } } }, 'c.json'), /goProxy/);
  });
});

describe('go modules: the pipeline', () => {
  async function build(h: PipelineHarness, id: string): Promise<Build> {
    return (await h.state.get(collections.builds, id)) ?? assert.fail(`no build ${id}`);
  }
  async function tasks(h: PipelineHarness, id: string): Promise<Task[]> {
    return h.state.query(collections.tasks, { where: { buildId: id } });
  }
  const commitOf = (h: PipelineHarness, files: Record<string, string>) => h.source.commit('demo', 'main', files);
  /** Lands a result of the build's current fetch task whose one step failed with `finding`. */
  async function fetchFails(h: PipelineHarness, id: string, finding: NonNullable<TaskResult['steps'][number]['finding']>): Promise<void> {
    const failed = result((await build(h, id)).taskId ?? assert.fail('no task'), 'failed');
    failed.steps = [{ name: 'go list -deps -test ./...', exitCode: 1, durationMs: 5, finding }];
    await land(h, failed);
  }

  it('fetches first, with the network, then builds offline from the fetched cache', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('gomod', { commit: commitOf(h, { 'go.mod': goMod, 'go.sum': goSum }) });
    const fetching = await build(h, id);
    assert.equal(fetching.modules?.phase, 'fetch');
    const fetch = h.compute.started.at(-1);
    assert.ok(fetch);
    assert.equal(fetch.taskId, fetching.taskId);
    assert.equal(fetch.network, true, 'the fetch task alone reaches the network');
    assert.deepEqual(fetch.egress, [{ host: 'proxy.golang.org', port: 443 }, { host: 'sum.golang.org', port: 443 }], 'and only the proxy and the checksum database');
    assert.equal(fetch.spec.env['GOPROXY'], 'https://proxy.golang.org');
    assert.equal(fetch.spec.env['GOSUMDB'], 'sum.golang.org');
    assert.deepEqual(fetch.spec.steps.map((step) => step.argv.slice(0, 4)), [['go', 'list', '-mod=readonly', '-deps']]);
    assert.ok(fetch.spec.goModules?.upload?.url.includes(blobKeys.modules(fetching.modules.key)), fetch.spec.goModules?.upload?.url);
    TaskSpec.parse(fetch.spec);

    await h.blobs.put(blobKeys.modules(fetching.modules.key), 'the cache');
    await finish(h, fetch.taskId, 'passed');
    const planned = await build(h, id);
    assert.equal(planned.modules?.phase, 'ready');
    const whole = h.compute.started.at(-1);
    assert.ok(whole && whole.taskId === planned.taskId, 'the build task started once the cache was in');
    assert.equal(whole.network, false);
    assert.equal(whole.spec.env['GOPROXY'], 'off');
    assert.ok(whole.spec.goModules?.url, 'the build unpacks the fetched cache');
    assert.equal(planned.attempts, 2);

    await finish(h, whole.taskId, 'passed');
    assert.equal((await build(h, id)).status, 'passed');
  });

  it('reuses a cache in place: a later build with the same module files runs no fetch task', async () => {
    const h = await createPipelineHarness();
    const first = await h.request('gomod', { commit: commitOf(h, { 'go.mod': goMod, 'go.sum': goSum }) });
    const key = (await build(h, first)).modules?.key ?? assert.fail('no key');
    await h.blobs.put(blobKeys.modules(key), 'the cache');
    const second = await h.request('gomod', { commit: commitOf(h, { 'main.go': 'package main\n' }) });
    const reused = await build(h, second);
    assert.deepEqual(reused.modules, { key, phase: 'ready', reused: true });
    assert.deepEqual((await tasks(h, second)).map((task) => task.step), ['build']);
  });

  it('fails the build when the fetch finds go.sum wrong, with the agent\'s finding', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('gomod', { commit: commitOf(h, { 'go.mod': goMod, 'go.sum': goSum }) });
    await fetchFails(h, id, { blame: 'commit', text: 'go.sum does not match what the module proxy serves for example.com/dep@v1.0.0 (checksum mismatch)' });
    const ended = await build(h, id);
    assert.equal(ended.status, 'failed');
    assert.equal(ended.reason, 'modules: go list -deps -test ./... exited 1: go.sum does not match what the module proxy serves for example.com/dep@v1.0.0 (checksum mismatch)');
    assert.deepEqual((await tasks(h, id)).map((task) => task.step), ['modules']);
  });

  it('retries a fetch that could not reach the proxy, then calls it an infra failure', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('gomod', { commit: commitOf(h, { 'go.mod': goMod, 'go.sum': goSum }) });
    for (let attempt = 1; attempt <= 3; attempt++) {
      await fetchFails(h, id, { blame: 'environment', text: 'the module proxy could not be reached: dial tcp: lookup proxy.golang.org: no such host' });
    }
    const ended = await build(h, id);
    assert.equal(ended.status, 'infra-failure');
    assert.match(ended.reason ?? '', /^modules: worker lost 3 times; last: go list -deps -test \.\/\.\.\.: the module proxy could not be reached/);
  });

  it('calls a fetch that passed without leaving its cache lost, not passed', async () => {
    const h = await createPipelineHarness();
    const id = await h.request('gomod', { commit: commitOf(h, { 'go.mod': goMod, 'go.sum': goSum }) });
    const taskId = (await build(h, id)).taskId ?? assert.fail('no task');
    await finish(h, taskId, 'passed');
    const retried = await build(h, id);
    assert.equal(retried.modules?.phase, 'fetch');
    assert.notEqual(retried.taskId, taskId);
    const [first] = (await tasks(h, id)).filter((task) => task.id === taskId);
    assert.equal(first?.status, 'lost');
    assert.equal(first?.reason, 'the module fetch passed but its module cache is not in the blob store');
  });
});
