// A Go module's build in a worker against the same commands on the host: `go vet ./... && go build ./... &&
// go test ./...` for a three-line module and for a module with a dependency (served by a proxy this script writes,
// so nothing outside the machine is needed).
//   host cold:  an empty build cache and module cache, modules fetched from the proxy
//   host warm:  caches kept from the previous run; each run follows a change to the source, as a new commit would
//   worker:     poll to verdict of a build of the same change through the embedded default (queue, launch, the
//               worker's start, source and module cache download, the three steps, result and verdict)
//   first build of a new go.sum: the module-fetch task and then the build, poll to verdict
// Host and worker runs alternate, one at a time, so each pair sees the same machine. The last line is
// `container / host warm: R`, R the median of the pairs' ratios over both modules.
// Usage: node bench/module-build.ts [--builds N] [--host-type linux-amd64|host]
import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseConfig } from '../shared/core/config/config.ts';
import type { Build } from '../shared/core/model/types.ts';
import { collections } from '../shared/ports/state.ts';
import { createTestRepo, type TestRepo } from '../test/helpers/git-repo.ts';
import { writeGoProxy } from '../test/helpers/go-proxy.ts';
import { benchArgs } from './args.ts';
import { startBenchRuntime } from './runtime.ts';
import { describe, median } from './stats.ts';

const usage = `Usage: node bench/module-build.ts [options]
  --builds N         measured builds per module (default 7)
  --host-type NAME   where the workers run: linux-amd64 (containers, default) or host (the process sandbox)
  --help             this text`;
const values = benchArgs(usage, { builds: { type: 'string', default: '7' }, 'host-type': { type: 'string', default: 'linux-amd64' } });
const builds = Number(values.builds);
const hostType = values['host-type'];
if (!Number.isInteger(builds) || builds < 1) {
  process.stderr.write(`--builds ${values.builds}: expected a whole number from 1\n${usage}\n`);
  process.exit(2);
}

const run = promisify(execFile);
const dir = await mkdtemp(join(tmpdir(), 'hermetic-bench-modules-'));
const proxy = await writeGoProxy(join(dir, 'proxy'), [
  { path: 'example.com/dep', version: 'v1.0.0', files: { 'go.mod': 'module example.com/dep\n\ngo 1.18\n', 'dep.go': 'package dep\n\n// Answer answers.\nfunc Answer() int { return 42 }\n' } },
]);

interface Subject {
  name: string;
  files: Record<string, string>;
  /** The test file a new commit changes (a test of its own), so every build compiles, links and runs a new test binary. */
  changed: string;
}
const subjects: Subject[] = [
  {
    name: 'calc',
    changed: 'calc_test.go',
    files: {
      'go.mod': 'module example.com/calc\n\ngo 1.18\n',
      'calc.go': 'package calc\n\n// Add adds.\nfunc Add(a, b int) int { return a + b }\n',
      'calc_test.go': 'package calc\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 2) != 4 {\n\t\tt.Fatal("2+2 != 4")\n\t}\n}\n',
    },
  },
  {
    name: 'app',
    changed: 'app_test.go',
    files: {
      'go.mod': 'module example.com/app\n\ngo 1.18\n\nrequire example.com/dep v1.0.0\n',
      'go.sum': proxy.goSum,
      'app.go': 'package app\n\nimport "example.com/dep"\n\n// Double doubles the answer.\nfunc Double() int { return 2 * dep.Answer() }\n',
      'app_test.go': 'package app\n\nimport "testing"\n\nfunc TestDouble(t *testing.T) {\n\tif Double() != 84 {\n\t\tt.Fatal(Double())\n\t}\n}\n',
    },
  },
];

const repos = new Map<string, TestRepo>();
for (const subject of subjects) {
  const repo = await createTestRepo(join(dir, 'repos', subject.name));
  await repo.commit(subject.files, 'first');
  repos.set(subject.name, repo);
}
const builder = { type: 'go-module', hostType, goProxy: proxy.url, goSumDb: 'off', timeoutSeconds: 600 } as const;
const catalog = parseConfig(
  { repos: subjects.map((subject) => ({ name: subject.name, url: repos.get(subject.name)?.path ?? '', backfill: 1, builders: ['go'] })), builders: { go: builder } },
  'bench-config.json',
);
const runtime = await startBenchRuntime(join(dir, 'data'), catalog);

/** Seconds of `go vet && go build && go test` in `tree` with the given caches, on the host. */
async function onHost(tree: string, caches: { gocache: string; modcache: string }): Promise<number> {
  const env = { ...process.env, GOCACHE: caches.gocache, GOMODCACHE: caches.modcache, GOPROXY: proxy.url, GOSUMDB: 'off', GOFLAGS: '-modcacherw', GOTOOLCHAIN: 'local' };
  const started = performance.now();
  for (const args of [['vet', './...'], ['build', './...'], ['test', './...']]) await run('go', args, { cwd: tree, env });
  return (performance.now() - started) / 1000;
}

/** Where a worker build's time went, in ms: poll to queued, queued to launched, launched to the agent's start, the agent's run, its steps, its end to the verdict. */
const phases = new Map<string, number[]>();
function record(name: string, ms: number): void {
  phases.set(name, [...(phases.get(name) ?? []), ms]);
}

/** Seconds from poll to verdict of the build of the repo's new head. */
async function inWorker(name: string, measured: boolean): Promise<{ seconds: number; build: Build }> {
  const started = Date.now();
  const poll = await runtime.pollNow([name]);
  const [requested] = poll.requested;
  if (requested === undefined) throw new Error(`the poll of ${name} found no new commit`);
  await runtime.waitForBuilds([requested.buildId], 600_000);
  const build = await runtime.deps.state.get(collections.builds, requested.buildId);
  if (build?.status !== 'passed') throw new Error(`build ${requested.buildId} of ${name}: ${build?.status} (${build?.reason})`);
  const task = build.taskId === undefined ? undefined : await runtime.deps.state.get(collections.tasks, build.taskId);
  if (measured && task?.launchedAt !== undefined && task.startedAt !== undefined && task.workerFinishedAt !== undefined && build.finishedAt !== undefined) {
    record('poll to task queued', task.createdAt - started);
    record('queued to worker started', task.launchedAt - task.createdAt);
    record('worker started to agent start', task.startedAt - task.launchedAt);
    record('source and module download', (task.sourceSeconds ?? 0) * 1000);
    for (const step of task.steps ?? []) record(`step ${step.name}`, step.durationMs);
    record('the three steps', (task.steps ?? []).reduce((sum, step) => sum + step.durationMs, 0));
    record('agent start to end', task.workerFinishedAt - task.startedAt);
    record('agent end to verdict', build.finishedAt - task.workerFinishedAt);
  }
  return { seconds: (Date.now() - started) / 1000, build };
}

const lines: string[] = [];
const ratios: number[] = [];
const hostWarm: number[] = [];
let firstOfGoSum: number | undefined;
for (const subject of subjects) {
  const repo = repos.get(subject.name);
  if (repo === undefined) continue;
  const tree = join(dir, 'host', subject.name);
  await cp(repo.path, tree, { recursive: true });
  const cold: number[] = [];
  const warm: number[] = [];
  const worker: number[] = [];
  const warmCaches = { gocache: join(dir, 'warm', subject.name, 'gocache'), modcache: join(dir, 'warm', subject.name, 'modcache') };
  await onHost(tree, warmCaches); // primes the warm caches
  process.stderr.write(`${subject.name}: ${builds} builds, host and ${hostType} worker in turn\n`);
  for (let i = 0; i <= builds; i++) {
    // A new test: the test binary changes, so go test runs it rather than answer from its result cache, as for a
    // real commit (an unused declaration may link to the same binary, whose result go would take from the cache).
    const comment = `\nfunc TestChange(t *testing.T) { t.Log("change ${i}") }\n`;
    await writeFile(join(tree, subject.changed), `${subject.files[subject.changed]}${comment}`);
    await repo.commit({ [subject.changed]: `${subject.files[subject.changed]}${comment}` }, `change ${i}`);
    const fresh = { gocache: join(dir, 'cold', `${subject.name}-${i}`, 'gocache'), modcache: join(dir, 'cold', `${subject.name}-${i}`, 'modcache') };
    const coldSeconds = await onHost(tree, fresh);
    await run('go', ['clean', '-modcache'], { env: { ...process.env, GOMODCACHE: fresh.modcache } });
    const warmSeconds = await onHost(tree, warmCaches);
    const built = await inWorker(subject.name, i > 0);
    // The first build of the dependency's module fetches: its own line, not a sample.
    if (i === 0) {
      if (built.build.modules !== undefined && built.build.modules.reused !== true) firstOfGoSum = built.seconds;
      continue;
    }
    cold.push(coldSeconds);
    warm.push(warmSeconds);
    hostWarm.push(warmSeconds);
    worker.push(built.seconds);
    ratios.push(built.seconds / warmSeconds);
  }
  lines.push(`${subject.name}: host cold    ${describe(cold, 's')}`);
  lines.push(`${subject.name}: host warm    ${describe(warm, 's')}`);
  lines.push(`${subject.name}: ${hostType} ${describe(worker, 's')} (poll to verdict; ${(median(worker) / median(warm)).toFixed(2)} x host warm)`);
}
await runtime.stop();
await rm(dir, { recursive: true, force: true });

for (const line of lines) console.log(line);
console.log('where a worker build\'s time went, both modules:');
for (const [phase, values] of phases) console.log(`  ${phase}: ${describe(values, 'ms')}`);
if (firstOfGoSum !== undefined) console.log(`first build of a new go.sum (fetch task, then the build): ${firstOfGoSum.toFixed(1)} s`);
const steps = phases.get('the three steps') ?? [];
console.log(`the steps alone in the worker / host warm: ${(median(steps) / 1000 / median(hostWarm)).toFixed(2)}`);
console.log(`container / host warm: ${median(ratios).toFixed(2)}`);
