// What batching the Go tree's small `dist test` units saves, measured on a real built tree on this machine: the same
// small package units run one `dist test` each (as a shard ran them before) and as the shard runs them now (the
// steps unitSteps makes), round after round, each run from an empty build cache as a shard starts from its snapshot.
// Checks that every unit of the batched runs got its own verdict from the output, and projects the saving over a
// whole run: the fraction of the time saved here, applied to the recorded time of every unit a full run batches.
// Usage: node bench/dist-batching.ts [--goroot DIR] [--units 40] [--rounds 3] [--json]
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPackageSplitter, packageOutcomes, type PackageClose } from '../shared/agent/package-results.ts';
import { commitGoTree, defaultZoneinfo, newestDebianTree, versionOf } from '../shared/cli/go-tree.ts';
import type { Step } from '../shared/core/model/types.ts';
import { parseGoRecording } from '../shared/core/sharding/go-recording.ts';
import { distNamingOf, distPackageOf, parseListing, smallUnitSeconds, unitSteps } from '../shared/core/sharding/test-suites.ts';
import { benchArgs } from './args.ts';
import { median } from './stats.ts';

const usage = `Usage: node bench/dist-batching.ts [options]
  --goroot DIR   a Go tree already built with make.bash (default: commit and build the newest /usr/share/go-*)
  --units N      how many small package units to run, spread evenly over the listing (default 40)
  --rounds N     unbatched and batched runs of them each, alternating which goes first (default 3)
  --seed FILE    recorded durations: which units are small, and the projection (default bench/data/go1.19-linux-amd64-2cpu.json)
  --json         the figures as JSON on stdout
  --help         this text`;

const values = benchArgs(usage, {
  goroot: { type: 'string' },
  units: { type: 'string', default: '40' },
  rounds: { type: 'string', default: '3' },
  seed: { type: 'string', default: 'bench/data/go1.19-linux-amd64-2cpu.json' },
  json: { type: 'boolean', default: false },
});
const count = Number(values.units);
const rounds = Number(values.rounds);
if (!Number.isInteger(count) || count < 2 || !Number.isInteger(rounds) || rounds < 1) {
  process.stderr.write(`dist-batching: --units wants a whole number >= 2 and --rounds one >= 1\n${usage}\n`);
  process.exit(2);
}
const say = (line: string) => process.stderr.write(`dist-batching: ${line}\n`);
// As a go-tree builder without the network runs its units (see testSuiteOf).
const env = { PATH: '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/tmp', GO_BUILDER_NAME: '', GOPROXY: 'off', GOROOT_BOOTSTRAP: '/usr/lib/go' };

let scratch: string | undefined;
let goroot = values.goroot;
if (goroot === undefined) {
  scratch = await mkdtemp(join(tmpdir(), 'hermetic-dist-batching-'));
  const from = await newestDebianTree();
  goroot = join(scratch, 'go');
  await commitGoTree(goroot, from, await versionOf(from), defaultZoneinfo);
  say(`building ${from} with make.bash`);
  const made = await run(['bash', 'make.bash'], join(goroot, 'src'));
  if (made.code !== 0) throw new Error(`make.bash failed:\n${made.output.slice(-2000)}`);
}
const src = join(goroot, 'src');

try {
  const listing = await run(['../bin/go', 'tool', 'dist', 'test', '-list'], src);
  const listed = parseListing('go-tree', listing.output);
  const naming = distNamingOf(listed);
  const recording = parseGoRecording(JSON.parse(await readFile(values.seed, 'utf8')));
  const seconds = new Map(recording.units.map((unit) => [unit.name, unit.seconds]));
  const isSmall = (name: string) => distPackageOf(name, naming) !== undefined && (seconds.get(name) ?? 0) <= smallUnitSeconds;
  const small = listed.map((unit) => unit.name).filter(isSmall);
  const chosen = Array.from({ length: Math.min(count, small.length) }, (_, index) => small[Math.floor((index * small.length) / Math.min(count, small.length))] ?? '');
  const planned = chosen.map((name) => ({ name, run: { kind: 'whole' as const }, estimate: seconds.get(name) ?? 0 }));
  const suite = { kind: 'go-tree' as const, unitEnv: {} };
  const unbatched = unitSteps(suite, planned, undefined);
  const batched = unitSteps(suite, planned, naming);
  say(`${chosen.length} small units of ${small.length} (${listed.length} listed, ${naming} naming): ${unbatched.length} invocations unbatched, ${batched.length} batched`);

  const times = { unbatched: [] as number[], batched: [] as number[] };
  let attributed = 0;
  for (let round = 0; round < rounds; round++) {
    for (const mode of round % 2 === 0 ? (['unbatched', 'batched'] as const) : (['batched', 'unbatched'] as const)) {
      // dist keeps its build cache in the tree (pkg/obj/go-build), which a shard's snapshot leaves out.
      await rm(join(goroot, 'pkg', 'obj', 'go-build'), { recursive: true, force: true });
      const started = performance.now();
      for (const step of mode === 'batched' ? batched : unbatched) {
        const ran = await runStep(step);
        if (mode === 'batched' && step.units !== undefined) attributed += ran.outcomes.filter((outcome) => outcome.exitCode === 0).length;
        if (ran.code !== 0) say(`${step.name} exited ${ran.code}:\n${ran.output.slice(-1500)}`);
      }
      times[mode].push((performance.now() - started) / 1000);
      say(`round ${round + 1}: ${mode} ${times[mode].at(-1)?.toFixed(1)} s`);
    }
  }

  const perUnitSaving = (median(times.unbatched) - median(times.batched)) / chosen.length;
  const fullSmall = recording.units.filter((unit) => isSmall(unit.name));
  const fullTotal = recording.units.reduce((sum, unit) => sum + unit.seconds, 0);
  // The fraction of the small units' time saved here, applied to their recorded time (recorded one dist test each).
  const smallTotal = fullSmall.reduce((sum, unit) => sum + unit.seconds, 0);
  const projected = (1 - median(times.batched) / median(times.unbatched)) * smallTotal;
  const figures = {
    goroot,
    units: chosen.length,
    rounds,
    invocations: { unbatched: unbatched.length, batched: batched.length },
    unbatchedSeconds: median(times.unbatched),
    batchedSeconds: median(times.batched),
    ratio: median(times.unbatched) / median(times.batched),
    attributedPerBatchedRun: attributed / rounds,
    perUnitSavingSeconds: perUnitSaving,
    fullRun: { units: recording.units.length, smallUnits: fullSmall.length, recordedSeconds: fullTotal, smallRecordedSeconds: smallTotal, projectedSavingSeconds: projected },
  };
  const fixed = (value: number) => value.toFixed(1);
  const lines = [
    `${chosen.length} small package units of the Go tree (${recording.goVersion} recording), ${rounds} rounds, each run from an empty build cache`,
    `unbatched (${unbatched.length} dist test runs): median ${fixed(figures.unbatchedSeconds)} s [${times.unbatched.map(fixed).join(', ')}]`,
    `batched   (${batched.length} dist test run${batched.length === 1 ? '' : 's'}): median ${fixed(figures.batchedSeconds)} s [${times.batched.map(fixed).join(', ')}]`,
    `ratio ${figures.ratio.toFixed(2)}x; saving ${fixed(perUnitSaving)} s per unit; ${fixed(figures.attributedPerBatchedRun)} of ${chosen.length} units passed with a result line of their own per batched run`,
    `projected over a full run: ${fullSmall.length} of ${recording.units.length} units are small, ${fixed(smallTotal)} s of the ${fixed(fullTotal)} s recorded; ` +
      `saving the same fraction of them saves ${fixed(projected)} s (${((100 * projected) / fullTotal).toFixed(0)}% of all unit time)`,
  ];
  if (values.json) process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
  else process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
}

/** Runs a unit step as the agent would, splitting a batched one's output as the agent does. */
async function runStep(step: Step) {
  const closes: PackageClose[] = [];
  let bytes = 0;
  const splitter = step.units === undefined ? undefined : createPackageSplitter(step.units, () => performance.now());
  const startedAt = performance.now();
  const ran = await run(step.argv, join(goroot ?? '', step.dir ?? ''), (data) => {
    if (splitter !== undefined) closes.push(...splitter.push(data, bytes));
    bytes += data.length;
  });
  const outcomes =
    step.units === undefined
      ? []
      : packageOutcomes(step.units, closes, { exitCode: ran.code, signal: null, timedOut: false, startedAt, endedAt: performance.now(), log: { start: 0, end: bytes } });
  return { ...ran, outcomes };
}

function run(argv: readonly string[], cwd: string, onStdout?: (data: Buffer) => void): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const [program = '', ...args] = argv;
    const child = spawn(program, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (data: Buffer) => {
      chunks.push(data);
      onStdout?.(data);
    });
    child.stderr.on('data', (data: Buffer) => chunks.push(data));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output: Buffer.concat(chunks).toString('utf8') }));
  });
}
