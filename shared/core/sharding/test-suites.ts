// What a sharded builder's tests are, per kind: how the make worker builds and lists them, how one planned unit
// runs on a shard worker, and how a unit's output is tidied so the merged log reads like one run. Pure logic: the
// listing comes from an untrusted worker, so it is parsed strictly and bounded, and nothing here does I/O.
import type { Step, TestSuite, TestSuiteKind } from '../model/types.ts';
import { defaultPartOverheadSeconds, goTestDirSplit, type PlanUnit } from './planner.ts';
import type { PlannedUnit } from '../model/shard-plan.ts';

/** A unit as the make worker listed it: its name and, where the kind can split it by test, its tests. */
export interface ListedUnit {
  name: string;
  tests?: string[];
}

/** The most units a listing may hold; past it the listing is refused rather than planned. */
export const maxListedUnits = 20_000;

/** What a builder's config gives a test suite; the rest is the kind's. */
export interface TestSuiteOptions {
  packages: readonly string[];
  /** The builder's steps may reach the network. */
  network: boolean;
  shards: TestSuite['shards'];
  retryFailed: boolean;
  snapshotMaxBytes: number;
}

/** A sharded builder's suite of the given kind: its make steps, its listing step and what its snapshot leaves out. */
export function testSuiteOf(kind: TestSuiteKind, options: TestSuiteOptions): TestSuite {
  const common = { kind, shards: options.shards, retryFailed: options.retryFailed, snapshotMaxBytes: options.snapshotMaxBytes };
  if (kind === 'go-module') {
    const packages = options.packages.join(' ');
    return {
      ...common,
      make: [
        { name: `go vet ${packages}`, argv: ['go', 'vet', ...options.packages] },
        { name: `go build ${packages}`, argv: ['go', 'build', ...options.packages] },
      ],
      // Listing builds every test binary, so the snapshot's build cache spares the shards that work.
      list: { name: `go test -list . ${packages}`, argv: ['go', 'test', '-list', '.', ...options.packages], capture: true },
      unitEnv: {},
      snapshotExclude: [],
    };
  }
  // To Go's tests, GO_BUILDER_NAME means one of Go's own builders, which have the network and expect external hosts
  // (net's DNS and dial tests) to be there; a builder without the network is blanked out of it, as a developer's
  // machine is, so those tests skip themselves. dist must list and run with the same setting.
  const builderEnv = options.network ? {} : { GO_BUILDER_NAME: '' };
  return {
    ...common,
    make: [{ name: 'make.bash', argv: ['bash', 'make.bash'], dir: 'src' }],
    list: {
      name: 'go tool dist test -list',
      argv: ['../bin/go', 'tool', 'dist', 'test', '-list'],
      dir: 'src',
      capture: true,
      ...(options.network ? {} : { env: builderEnv }),
    },
    unitEnv: builderEnv,
    // dist's own build cache (pkg/obj/go-build) and make.bash's bootstrap toolchain: shards need neither.
    snapshotExclude: ['pkg/obj', 'pkg/bootstrap'],
  };
}

/**
 * The units in a make worker's listing output, in listing order. Throws an Error saying which line is wrong when
 * the output is not a listing of this kind, or has more than maxListedUnits units.
 */
export function parseListing(kind: TestSuiteKind, output: string): ListedUnit[] {
  const units = kind === 'go-module' ? parseGoTestList(output) : parseDistList(output);
  if (units.length > maxListedUnits) throw new Error(`the listing has ${units.length} units; at most ${maxListedUnits} are planned`);
  return units;
}

// `go test -list . PKGS`: each package's matching names, then `ok  <pkg> <time>`, or `?   <pkg> [no test files]`.
// Only packages with a test, example or fuzz target are units; benchmarks do not run under `go test`.
function parseGoTestList(output: string): ListedUnit[] {
  const units: ListedUnit[] = [];
  const seen = new Set<string>();
  let names: string[] = [];
  for (const [index, line] of output.split('\n').entries()) {
    if (line.trim() === '') continue;
    const done = /^(ok|\?)\s+(\S+)(\s|$)/.exec(line);
    if (done !== null) {
      const pkg = done[2] ?? '';
      const tests = names.filter((name) => !name.startsWith('Benchmark'));
      names = [];
      if (!isPackagePath(pkg)) throw new Error(`listing line ${index + 1}: ${JSON.stringify(pkg)} is not a package path`);
      if (done[1] === '?' || tests.length === 0 || seen.has(pkg)) continue;
      seen.add(pkg);
      units.push({ name: pkg, tests });
      continue;
    }
    if (!/^(Test|Example|Fuzz|Benchmark)[\p{L}\p{N}_]*$/u.test(line)) {
      throw new Error(`listing line ${index + 1}: expected a test name or a package result, got ${JSON.stringify(line.slice(0, 120))}`);
    }
    names.push(line);
  }
  if (names.length > 0) throw new Error('listing ends with test names but no package result line');
  return units;
}

// `go tool dist test -list`: one unit name per line (go_test:archive/tar, runtime:cpu124, test:0_1, api, ...).
function parseDistList(output: string): ListedUnit[] {
  const units: ListedUnit[] = [];
  const seen = new Set<string>();
  for (const [index, line] of output.split('\n').entries()) {
    const name = line.trim();
    if (name === '') continue;
    if (!/^[A-Za-z0-9_.:/+-]{1,200}$/.test(name)) {
      throw new Error(`listing line ${index + 1}: expected a dist test name, got ${JSON.stringify(name.slice(0, 120))}`);
    }
    if (seen.has(name)) throw new Error(`listing line ${index + 1}: ${name} is listed twice`);
    seen.add(name);
    units.push({ name });
  }
  return units;
}

function isPackagePath(path: string): boolean {
  return /^[\p{L}\p{N}_.~+/-]{1,400}$/u.test(path) && !path.split('/').includes('..');
}

// The Go tree's `test` directory unit as dist lists it without GO_TEST_SHARDS.
const goTestDirUnit = 'test:0_1';
const goTestDirPart = /^test:\d+_\d+$/;

/**
 * The planner's input: each listed unit with its learned seconds (by unit name, for this builder), splittable where
 * the kind knows how. The Go tree's `test` directory divides into parts whose learned durations are kept by part
 * name; a Go module's package divides by `-run` over its tests. Never throws.
 */
export function planUnitsOf(kind: TestSuiteKind, listed: readonly ListedUnit[], learned: ReadonlyMap<string, number>): PlanUnit[] {
  return listed.map((unit) => {
    const seconds = learned.get(unit.name);
    const base = seconds === undefined ? { name: unit.name } : { name: unit.name, seconds };
    if (kind === 'go-tree') {
      if (unit.name !== goTestDirUnit) return base;
      const partSeconds = Object.fromEntries([...learned].filter(([name]) => goTestDirPart.test(name) && name !== goTestDirUnit));
      return { ...base, split: goTestDirSplit({ partSeconds }) };
    }
    const tests = unit.tests ?? [];
    return tests.length < 2 ? base : { ...base, split: { kind: 'tests', tests: tests.map((name) => ({ name })) } };
  });
}

/** The step a shard worker runs for one planned unit of the suite, named after the unit. */
export function unitStep(suite: Pick<TestSuite, 'kind' | 'unitEnv'>, unit: PlannedUnit): Step {
  const { run } = unit;
  // A part's variables (dist's GO_TEST_SHARDS: a part's name exists only with it set) over the suite's.
  const env = { ...suite.unitEnv, ...(run.kind === 'part' ? run.env : {}) };
  const withEnv = Object.keys(env).length === 0 ? {} : { env };
  if (suite.kind === 'go-module') {
    const pkg = run.kind === 'whole' ? unit.name : run.of;
    // -count=1: a test's verdict comes from running it here, never from a cache.
    const argv = ['go', 'test', '-count=1', ...(run.kind === 'tests' ? ['-run', run.pattern] : []), pkg];
    return { name: unit.name, argv, ...withEnv };
  }
  // dist takes exact unit names as arguments.
  return { name: unit.name, argv: ['../bin/go', 'tool', 'dist', 'test', unit.name], dir: 'src', ...withEnv };
}

/**
 * Planned units estimated at most this many seconds are small: consecutive small package units of a Go tree shard
 * share one `dist test`, which spares each but the first dist's start-up (about 1.4 s). A longer unit keeps its own,
 * so that its time is its own and a stop at the deadline falls on it alone.
 */
export const smallUnitSeconds = 30;

/**
 * How a `dist test` listing names the units it runs as packages of its one shared `go test`: Go 1.20 and before as
 * `go_test:<package>` beside bare names of other kinds (`api`, `cgo_test`); Go 1.21 on by the bare package path, and
 * every bare name is one (dist itself tells them apart by the colon).
 */
export type DistNaming = 'go_test-prefix' | 'bare';

/** The naming of a whole `dist test -list` listing (a filtered one may lack the `go_test:` names that tell). */
export function distNamingOf(listed: readonly ListedUnit[]): DistNaming {
  return listed.some((unit) => unit.name.startsWith('go_test:')) ? 'go_test-prefix' : 'bare';
}

/** The package a dist unit tests in dist's shared `go test`, or undefined for a unit of any other kind. */
export function distPackageOf(name: string, naming: DistNaming): string | undefined {
  if (naming === 'go_test-prefix') return name.startsWith('go_test:') ? name.slice('go_test:'.length) : undefined;
  return name.includes(':') ? undefined : name;
}

/**
 * The steps a shard worker runs for its planned units, in order: one per unit (unitStep), except that for a Go tree
 * whose listing's naming is known, each run of two or more consecutive small package units is one `dist test` of
 * them all, whose result gives each unit its own outcome (the step's `units`).
 */
export function unitSteps(suite: Pick<TestSuite, 'kind' | 'unitEnv'>, units: readonly PlannedUnit[], naming: DistNaming | undefined): Step[] {
  const steps: Step[] = [];
  let batch: { name: string; package: string }[] = [];
  const flush = () => {
    if (batch.length === 1 && batch[0] !== undefined) steps.push(unitStep(suite, { name: batch[0].name, run: { kind: 'whole' }, estimate: 0 }));
    if (batch.length > 1) steps.push(batchStep(suite, batch));
    batch = [];
  };
  for (const unit of units) {
    const pkg = suite.kind === 'go-tree' && naming !== undefined && unit.run.kind === 'whole' && unit.estimate <= smallUnitSeconds ? distPackageOf(unit.name, naming) : undefined;
    if (pkg !== undefined) {
      batch.push({ name: unit.name, package: pkg });
      continue;
    }
    flush();
    steps.push(unitStep(suite, unit));
  }
  flush();
  return steps;
}

function batchStep(suite: Pick<TestSuite, 'unitEnv'>, units: { name: string; package: string }[]): Step {
  const names = units.map((unit) => unit.name);
  const name = `${units.length} units: ${names[0]} .. ${names.at(-1)}`;
  const env = Object.keys(suite.unitEnv).length === 0 ? {} : { env: suite.unitEnv };
  return { name: name.length > 200 ? `${name.slice(0, 197)}...` : name, argv: ['../bin/go', 'tool', 'dist', 'test', ...names], dir: 'src', ...env, units };
}

/**
 * The learned observation for a unit split into parts: the parts' sum, less the overhead each part beyond the first
 * added, so the whole unit's estimate stays comparable to a run in one piece.
 */
export function wholeSecondsOfParts(partSeconds: readonly number[]): number {
  const total = partSeconds.reduce((sum, value) => sum + value, 0);
  return Math.max(0, total - (partSeconds.length - 1) * defaultPartOverheadSeconds);
}

/**
 * Units' outputs joined as they go into the merged log. Each Go tree unit runs its own `dist test`, which prints the
 * machine's environment, a section heading and its own closing line every time: the environment is kept once, a
 * heading only where it changes, the closing lines are dropped (the merged log ends with one verdict of its own),
 * and runs of blank lines are closed up, so the units read as one `dist test` run. A Go module's unit output is
 * already what `go test ./...` prints for that package, and is kept as it is.
 */
export function mergedUnitOutputs(kind: TestSuiteKind, texts: readonly string[]): string {
  if (kind === 'go-module') return texts.map(withNewline).join('');
  const kept: string[] = [];
  let heading: string | undefined;
  let environmentShown = false;
  let dropping = false;
  for (const text of texts) {
    for (const line of text.replace(/^\n+|\n+$/g, '').split('\n')) {
      if (line.startsWith('##### ')) {
        const environment = line === '##### Test execution environment.';
        dropping = environment && environmentShown;
        environmentShown ||= environment;
        if (dropping || line === heading) continue;
        heading = line;
        dropTrailingBlanks(kept);
        if (kept.length > 0) kept.push('');
        kept.push(line);
      } else if (!dropping && !/^(ALL TESTS PASSED|FAILED)( \(.*\))?$/.test(line) && !(line === '' && kept.at(-1) === '')) {
        kept.push(line);
      }
    }
    dropTrailingBlanks(kept);
  }
  return withNewline(kept.join('\n'));
}

function dropTrailingBlanks(lines: string[]): void {
  while (lines.at(-1) === '') lines.pop();
}

function withNewline(text: string): string {
  return text === '' || text.endsWith('\n') ? text : `${text}\n`;
}
