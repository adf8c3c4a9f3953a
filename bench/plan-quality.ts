// Plan quality: the shard planner's simulated makespan for N = 2..64 on unit durations recorded from a real Go tree
// run, beside two baselines, and against the bound max(longest unsplittable part, total / N).
//
// The simulation takes the recording as the truth and as the planner's learned durations; a shard's time is the sum
// of its units' recorded times (no worker boot, no snapshot fetch: those cost every plan the same). By default the
// planner may cut the `test` directory unit only into part counts that were recorded (GO_TEST_SHARDS=K, every part
// timed) or that divide one (test/run.go assigns files by hash % k, so the parts of k | K are unions of K's; their
// work is measured, only the per-part overhead, estimated from the recording, is modeled). `--parts any` lets it
// choose any count up to 64, parts of other counts then being modeled (equal shares plus that overhead), and says
// how many were.
//
// Baselines, both on whole units as `go tool dist test -list` prints them:
// - round-robin: unit i of the listing goes to shard i mod N.
// - Go's coordinator (x/build cmd/coordinator, buildStatus.runTests with testSet): the main buildlet walks the list
//   in order, std then cmd `go_test:` packages sorted and batched into ~10 s chunks (partitionGoTests), then every
//   other unit alone in listing order (testsToRunInOrder); N-1 helpers each take the biggest remaining unit whenever
//   they are free (testsToRunBiggestFirst). Dynamic, like the original, and with every helper ready at time 0 and
//   durations known exactly, which flatters it: in production helpers booted later and durations were averages.
//
// Targets (issue 4): makespan within 5% of the bound at every N; at N = 16 within 10% of total/16; never worse than
// either baseline.
import { readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import {
  type GoRecording,
  goPlanUnits,
  parseGoRecording,
  testDirParts,
  type UnitTiming,
} from '../shared/core/sharding/go-recording.ts';
import { planShards } from '../shared/core/sharding/planner.ts';
import { benchArgs } from './args.ts';
import { describeError } from '../shared/core/errors.ts';

const defaultData = join(import.meta.dirname, 'data', 'go1.19-linux-amd64-2cpu.json');
const usage = `Usage: node bench/plan-quality.ts [options]
  --data FILE              the recording (default bench/data/go1.19-linux-amd64-2cpu.json)
  --parts recorded|any     which part counts of the test directory unit the planner may use (default recorded)
  --from N, --to N         the shard counts simulated (default 2 to 64)
  --help                   this text`;
const values = benchArgs(usage, {
  data: { type: 'string', default: defaultData },
  parts: { type: 'string', default: 'recorded' },
  from: { type: 'string', default: '2' },
  to: { type: 'string', default: '64' },
});
const fail = (message: string): never => {
  process.stderr.write(`plan-quality: ${message}\n`);
  process.exit(1);
};
if (values.parts !== 'recorded' && values.parts !== 'any') fail(`--parts wants recorded or any, got ${values.parts}`);
const [from, to] = [Number(values.from), Number(values.to)];
if (!Number.isInteger(from) || !Number.isInteger(to) || from < 1 || to < from) {
  fail(`--from/--to want 1 <= from <= to, got ${values.from}..${values.to}`);
}

let text = '';
try {
  text = await readFile(values.data, 'utf8');
} catch (error) {
  fail(
    `cannot read the recorded durations ${values.data}: ${describeError(error)}\n` +
      'record them first: node bench/record-go-durations.ts (about 40 minutes on 2 cores), or pass --data FILE',
  );
}
const recording = ((): GoRecording => {
  try {
    return parseGoRecording(JSON.parse(text));
  } catch (error) {
    return fail(`${values.data}: ${describeError(error)}`);
  }
})();
if (!recording.complete) {
  process.stderr.write(`plan-quality: warning: ${values.data} says complete: false (the recorder was still running)\n`);
}

const units = recording.units;
const recordedOnly = values.parts === 'recorded';
const planUnits = goPlanUnits(recording, { recordedCountsOnly: recordedOnly });
const total = units.reduce((sum, unit) => sum + unit.seconds, 0);
const parts = testDirParts(recording);
const knownParts = new Map(Object.entries(parts.seconds));
const wholeSeconds = new Map(units.map((unit) => [unit.name, unit.seconds]));
const longestWhole = [...units].sort((a, b) => b.seconds - a.seconds)[0];
const testUnit = units.find((unit) => unit.name === 'test:0_1');

/** Round-robin over the listing order, whole units. */
function roundRobin(timings: readonly UnitTiming[], shards: number): number {
  const loads = new Array<number>(shards).fill(0);
  timings.forEach((unit, i) => {
    loads[i % shards] = (loads[i % shards] ?? 0) + unit.seconds;
  });
  return Math.max(...loads);
}

/** Go's coordinator: main buildlet in order (batched go_test chunks, then the rest), helpers biggest first. */
function coordinator(timings: readonly UnitTiming[], shards: number): number {
  const goTests = timings.filter((unit) => unit.name.startsWith('go_test:'));
  const byName = (a: UnitTiming, b: UnitTiming) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const std = goTests.filter((unit) => !unit.name.startsWith('go_test:cmd/')).sort(byName);
  const cmd = goTests.filter((unit) => unit.name.startsWith('go_test:cmd/')).sort(byName);
  const inOrder: UnitTiming[][] = [];
  let chunk: UnitTiming[] = [];
  let chunkSeconds = 0;
  for (const unit of [...std, ...cmd]) {
    if (chunkSeconds + unit.seconds > 10 && chunk.length > 0) {
      inOrder.push(chunk);
      chunk = [];
      chunkSeconds = 0;
    }
    chunk.push(unit);
    chunkSeconds += unit.seconds;
  }
  if (chunk.length > 0) inOrder.push(chunk);
  for (const unit of timings) if (!unit.name.startsWith('go_test:')) inOrder.push([unit]);
  const biggestFirst = [...timings].sort((a, b) => b.seconds - a.seconds);

  const taken = new Set<string>();
  const free = new Array<number>(shards).fill(0);
  const active = new Array<boolean>(shards).fill(true);
  for (;;) {
    let machine = -1;
    for (let i = 0; i < shards; i++) if (active[i] && (machine < 0 || (free[i] ?? 0) < (free[machine] ?? 0))) machine = i;
    if (machine < 0) break;
    let work: UnitTiming[] = [];
    if (machine === 0) {
      for (const candidate of inOrder) {
        work = candidate.filter((unit) => !taken.has(unit.name));
        if (work.length > 0) break;
      }
    } else {
      const next = biggestFirst.find((unit) => !taken.has(unit.name));
      work = next === undefined ? [] : [next];
    }
    if (work.length === 0) {
      active[machine] = false;
      continue;
    }
    for (const unit of work) taken.add(unit.name);
    free[machine] = (free[machine] ?? 0) + work.reduce((sum, unit) => sum + unit.seconds, 0);
  }
  return Math.max(...free);
}

const fixed = (value: number, digits = 1) => value.toFixed(digits);
const pad = (value: string, width: number) => value.padStart(width);

const shown = values.data.startsWith(import.meta.dirname) ? join('bench', relative(import.meta.dirname, values.data)) : values.data;
const testDir = testUnit === undefined ? 'absent' : `${fixed(testUnit.seconds)} s`;
const overhead = parts.overheadSeconds === undefined ? 'unknown' : `${fixed(parts.overheadSeconds)} s`;
console.log(`plan quality on ${shown}: ${recording.goVersion}, ${recording.cpus} cpus, ${units.length} units, ${fixed(total / 60)} min`);
console.log(
  `longest unit ${longestWhole?.name} ${fixed(longestWhole?.seconds ?? 0)} s; test dir ${testDir}, ` +
    `part counts recorded: ${parts.recordedCounts.join(', ') || 'none'}, derived: ${parts.derivedCounts.join(', ') || 'none'}, ` +
    `overhead per part ${overhead}; the planner may cut it into ${recordedOnly ? 'those counts' : 'any count up to 64'}`,
);
const headings = ['N', 'planner', 'round-robin', 'coordinator', 'bound', 'plan/bound', 'rr/bound', 'coord/bound', 'test parts'];
console.log(headings.map((heading, i) => pad(heading, i === 0 ? 3 : 11)).join(' '));

let worst = { ratio: 0, n: 0 };
const missedBound: number[] = [];
const worseThanBaseline: number[] = [];
let modeledParts = 0;
let atSixteen: number | undefined;
for (let n = from; n <= to; n++) {
  const plan = planShards(planUnits, n);
  let makespan = 0;
  for (const shard of plan.shards) {
    let seconds = 0;
    for (const unit of shard.units) {
      const recorded = unit.run.kind === 'whole' ? wholeSeconds.get(unit.name) : knownParts.get(unit.name);
      if (recorded === undefined) modeledParts++;
      seconds += recorded ?? unit.estimate;
    }
    makespan = Math.max(makespan, seconds);
  }
  const rr = roundRobin(units, n);
  const coord = coordinator(units, n);
  const ratio = makespan / plan.bound;
  if (ratio > worst.ratio) worst = { ratio, n };
  if (ratio > 1.05) missedBound.push(n);
  if (makespan > Math.min(rr, coord) + 1e-9) worseThanBaseline.push(n);
  if (n === 16) atSixteen = makespan / (total / 16);
  const parts = plan.splits.find((split) => split.unit === 'test:0_1')?.parts ?? 1;
  console.log(
    [
      pad(String(n), 3),
      ...[makespan, rr, coord, plan.bound].map((v) => pad(fixed(v), 11)),
      ...[ratio, rr / plan.bound, coord / plan.bound].map((v) => pad(fixed(v, 3), 11)),
      pad(String(parts), 11),
    ].join(' '),
  );
}
if (modeledParts > 0) {
  console.log(`${modeledParts} planned parts (over all N) had no recorded duration and were simulated with the planner's model`);
}
const verdict = (misses: readonly number[]) => (misses.length === 0 ? 'met' : `NOT met at N=${misses.join(',')}`);
console.log(`target: within 5% of the bound at every N: ${verdict(missedBound)} (worst at N=${worst.n})`);
if (atSixteen !== undefined) console.log(`target: N=16 within 10% of total/16: ${verdict(atSixteen <= 1.1 ? [] : [16])}`);
console.log(`target: never worse than round-robin or the coordinator: ${verdict(worseThanBaseline)}`);
console.log(`N=16 makespan / (total/16): ${atSixteen === undefined ? 'n/a (N=16 not in range)' : fixed(atSixteen, 3)}`);
console.log(`worst ratio to bound: ${fixed(worst.ratio, 3)}`);
