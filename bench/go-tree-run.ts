// A real sharded run of the Go source tree on this machine, through the embedded default: the tree Debian's
// golang-<v>-src ships is committed to a git repo, built once (make.bash on one worker, which lists the units and
// uploads a snapshot), then tested unsharded and sharded N ways from that one snapshot, one run after another.
// Every run is a go-tree builder of its own that differs only in its shard count, so they share the snapshot; each
// builder's learned durations are seeded from the recorded Go 1.19 run (bench/data), as a builder that had run
// before would have them. Prints, per run, the test phase's wall time, the aggregate unit time, the slowest shard
// beside its plan, the unpack times, and the verdict; and the snapshot's size and pack and upload times.
// Takes about an hour on 2 cores for 1, 2 and 4 shards.
// Usage: node bench/go-tree-run.ts [--shards 1,2,4] [--host-type linux-amd64|host] [--from DIR] [--keep] [--json]
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commitGoTree, defaultZoneinfo, newestDebianTree, versionOf } from '../shared/cli/go-tree.ts';
import { createConsoleLogger } from '../shared/cli/console.ts';
import { parseConfig } from '../shared/core/config/config.ts';
import { buildId } from '../shared/core/model/ids.ts';
import type { Task } from '../shared/core/model/types.ts';
import { learnFromBuild } from '../shared/core/pipeline/durations.ts';
import { collections } from '../shared/ports/state.ts';
import { startLocalRuntime } from '../shared/runtimes/local/local-runtime.ts';
import { parseGoRecording, testDirParts } from '../shared/core/sharding/go-recording.ts';
import { benchArgs } from './args.ts';
import { median } from './stats.ts';

const usage = `Usage: node bench/go-tree-run.ts [options]
  --shards LIST     shard counts to run, one build each, in order (default 1,2,4; the first also makes the snapshot)
  --host-type NAME  where the workers run (default linux-amd64: containers; host: the process sandbox)
  --from DIR        the Go tree to build (default: the newest /usr/share/go-*, from Debian's golang-<v>-src)
  --seed FILE       learned durations to start from (default bench/data/go1.19-linux-amd64-2cpu.json; "none": none)
  --keep            keep the temp dir (repo, data, logs) and print where it is
  --json            the figures as JSON on stdout
  --help            this text`;

const values = benchArgs(usage, {
  shards: { type: 'string', default: '1,2,4' },
  'host-type': { type: 'string', default: 'linux-amd64' },
  from: { type: 'string' },
  seed: { type: 'string', default: 'bench/data/go1.19-linux-amd64-2cpu.json' },
  keep: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
});
const counts = values.shards.split(',').map(Number);
if (counts.some((count) => !Number.isInteger(count) || count < 1)) {
  process.stderr.write(`go-tree-run: --shards wants shard counts like 1,2,4, got ${values.shards}\n${usage}\n`);
  process.exit(2);
}
const hostType = values['host-type'];
const say = (line: string) => process.stderr.write(`go-tree-run: ${line}\n`);

const dir = await mkdtemp(join(tmpdir(), 'hermetic-go-tree-run-'));
const from = values.from ?? (await newestDebianTree());
const version = await versionOf(from);
say(`committing ${from} (${version})`);
const { commit } = await commitGoTree(join(dir, 'go'), from, version, defaultZoneinfo);

const builderOf = (count: number) => `go-tree-${count}`;
const catalog = parseConfig(
  {
    repos: counts.map((count) => ({ name: `go-${count}`, url: join(dir, 'go'), builders: [builderOf(count)] })),
    builders: Object.fromEntries(counts.map((count) => [builderOf(count), { type: 'go-tree', hostType, shards: count, timeoutSeconds: 4 * 3600 }])),
  },
  'go-tree-run.json',
);
const runtime = await startLocalRuntime({
  dataDir: join(dir, 'data'),
  catalog,
  logger: createConsoleLogger({ write: (line) => process.stderr.write(`${line}\n`), verbose: false }),
  pollIntervalMs: 0,
  port: 0,
  onProgress: (line) => say(`images: ${line}`),
});
let stopping = false;
process.on('SIGINT', () => {
  if (stopping) process.exit(130);
  stopping = true;
  say('SIGINT: stopping every worker');
  void runtime.stop().finally(() => rm(dir, { recursive: true, force: true }).finally(() => process.exit(130)));
});

if (values.seed !== 'none') {
  const recording = parseGoRecording(JSON.parse(await readFile(values.seed, 'utf8')));
  const seconds = new Map(recording.units.map((unit) => [unit.name, unit.seconds]));
  for (const [name, part] of Object.entries(testDirParts(recording).seconds)) seconds.set(name, part);
  for (const count of counts) await learnFromBuild(runtime.deps, builderOf(count), `seed:${values.seed}`, seconds);
  say(`seeded ${seconds.size} learned durations per builder from ${values.seed} (${recording.goVersion}, ${recording.cpus} CPUs)`);
}

interface Figures {
  shards: number;
  status: string;
  reason: string | undefined;
  buildSeconds: number;
  testWallSeconds: number;
  aggregateSeconds: number;
  slowestShardSeconds: number;
  plannedMakespanSeconds: number;
  unpackSeconds: number;
  snapshot: 'made' | 'reused';
  units: number;
  failed: number;
  flaky: number;
}
const runs: Figures[] = [];
let made: { makeSeconds: number; bytes: number; files: number; packSeconds: number; uploadSeconds: number } | undefined;
try {
  for (const count of counts) {
    say(`${builderOf(count)}: ${count} shard(s)`);
    const id = buildId(`go-${count}`, commit, builderOf(count));
    await runtime.pollNow([`go-${count}`]);
    await runtime.waitForBuilds([id]);
    const build = await runtime.deps.state.get(collections.builds, id);
    const sharding = build?.sharding;
    const summary = sharding?.summary;
    if (build === undefined || sharding === undefined || summary === undefined) {
      throw new Error(`${builderOf(count)} ended ${build?.status} before its tests were merged: ${build?.reason}`);
    }
    const shards = (await Promise.all((sharding.shardTaskIds ?? []).map((taskId) => runtime.deps.state.get(collections.tasks, taskId)))).filter(
      (task): task is Task => task !== undefined,
    );
    if (sharding.makeTaskId !== undefined) {
      const make = await runtime.deps.state.get(collections.tasks, sharding.makeTaskId);
      if (make?.snapshot !== undefined) made = { makeSeconds: summary.makeMs / 1000, ...make.snapshot };
    }
    runs.push({
      shards: shards.length,
      status: build.status,
      reason: build.reason,
      buildSeconds: ((build.finishedAt ?? 0) - (build.startedAt ?? build.createdAt)) / 1000,
      testWallSeconds: summary.wallMs / 1000,
      aggregateSeconds: summary.aggregateMs / 1000,
      slowestShardSeconds: summary.makespanMs / 1000,
      plannedMakespanSeconds: summary.estimatedMakespanMs / 1000,
      unpackSeconds: median(shards.map((task) => task.sourceSeconds ?? Number.NaN)),
      snapshot: sharding.snapshotReused === true ? 'reused' : 'made',
      units: summary.units,
      failed: summary.failed,
      flaky: summary.flaky,
    });
    say(`${builderOf(count)}: ${build.status}${build.reason === undefined ? '' : ` (${build.reason})`}`);
  }
} finally {
  await runtime.stop();
  if (values.keep) say(`kept ${dir}`);
  else await rm(dir, { recursive: true, force: true });
}

const [unsharded] = runs;
const fixed = (value: number) => value.toFixed(1);
const lines = [
  `Go tree ${version} on ${hostType}, ${runs[0]?.units ?? 0} test units, one snapshot for every run`,
  made === undefined
    ? 'snapshot: reused from an earlier run'
    : `make.bash and listing: ${fixed(made.makeSeconds)} s; snapshot ${fixed(made.bytes / 1e6)} MB (${made.files} files), packed in ${fixed(made.packSeconds)} s, uploaded in ${fixed(made.uploadSeconds)} s`,
  'shards  test wall s  vs 1 shard  aggregate s  slowest shard s (planned)  unpack s (median)  verdict',
  ...runs.map(
    (run) =>
      `${String(run.shards).padStart(6)}  ${fixed(run.testWallSeconds).padStart(11)}  ${(unsharded === undefined ? '' : `${fixed(unsharded.testWallSeconds / run.testWallSeconds)}x`).padStart(10)}  ` +
      `${fixed(run.aggregateSeconds).padStart(11)}  ${`${fixed(run.slowestShardSeconds)} (${fixed(run.plannedMakespanSeconds)})`.padStart(25)}  ` +
      `${fixed(run.unpackSeconds).padStart(17)}  ${run.status}: ${run.failed} failed, ${run.flaky} flaky of ${run.units}`,
  ),
];
if (values.json) process.stdout.write(`${JSON.stringify({ version, hostType, snapshot: made, runs }, null, 2)}\n`);
else process.stdout.write(`${lines.join('\n')}\n`);
for (const run of runs) if (run.reason !== undefined) process.stderr.write(`${run.shards} shard(s): ${run.reason}\n`);
