import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { z } from 'zod';
import { goPlanUnits, parseGoRecording, testDirParts } from '../../shared/core/sharding/go-recording.ts';
import { learnDuration, learnWeight } from '../../shared/core/sharding/learn-duration.ts';
import { fallbackUnitSeconds, goTestDirSplit, partName, type PlanUnit, planShards } from '../../shared/core/sharding/planner.ts';
import type { ShardPlan } from '../../shared/core/model/shard-plan.ts';
import { quoteGoRegexp, runPattern } from '../../shared/core/sharding/run-pattern.ts';

const run = promisify(execFile);
const realData = join(import.meta.dirname, '..', '..', 'bench', 'data', 'go1.19-linux-amd64-2cpu.json');

// mulberry32: a small seeded PRNG, so every random instance can be replayed from its seed.
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Names a Go test could never have, but that a careless pattern would mangle.
const awkwardNames = [
  ...['Test.Dot', 'Test(a)', 'Test|Or', 'Test/Slash', 'Test[x]', 'Test$', '^Test', 'Test+*?', 'Test{1}', 'Test\\Back'],
  ...['TestÄ', 'Test'],
];

interface Instance {
  readonly seed: number;
  readonly units: PlanUnit[];
  readonly shards: number;
  /** Whether learned part durations may make splitting add less work than the overhead model (no lower bound then). */
  readonly learnedParts: boolean;
}

function randomInstance(seed: number): Instance {
  const random = prng(seed);
  const int = (low: number, high: number) => low + Math.floor(random() * (high - low + 1));
  const count = int(1, 60);
  const heavy = random() < 0.5;
  const duration = () => {
    const roll = random();
    if (roll < 0.05) return 0;
    if (heavy) return Math.exp(Math.log(2) + 1.5 * Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random()));
    return random() * 60;
  };
  let learnedParts = false;
  const units: PlanUnit[] = Array.from({ length: count }, (_, i) => {
    const name = `go_test:pkg${i}`;
    const seconds = random() < 0.1 ? undefined : duration() * (random() < 0.05 ? 20 : 1);
    const roll = random();
    if (roll < 0.1) {
      const partSeconds: Record<string, number> = {};
      if (random() < 0.5) {
        learnedParts = true;
        const k = int(2, 8);
        for (let p = 0; p < k; p++) partSeconds[partName(`test${i}:{i}_{k}`, p, k)] = random() * 40;
      }
      const maxParts = int(1, 16);
      return { name, seconds, split: { kind: 'parts', maxParts, partName: `test${i}:{i}_{k}`, countEnv: 'GO_TEST_SHARDS', partSeconds } };
    }
    if (roll < 0.2) {
      const testCount = int(1, 25);
      const tests = Array.from({ length: testCount }, (_, t) => ({
        name: random() < 0.3 ? `${awkwardNames[t % awkwardNames.length]}${t}` : `Test${t}`,
        ...(random() < 0.7 ? { seconds: duration() } : {}),
      }));
      return { name, seconds, split: { kind: 'tests', tests, overheadSeconds: random() * 5 } };
    }
    return { name, seconds };
  });
  return { seed, units, shards: int(1, 20), learnedParts };
}

/** Every property a plan must have, whatever the input. */
function checkPlan(units: readonly PlanUnit[], shards: number, plan: ShardPlan, label: string): void {
  const entries = plan.shards.flatMap((shard) => shard.units);
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(a), Math.abs(b));

  // Every unit exactly once: whole, or every one of its parts once, or its tests split with none lost or repeated.
  assert.equal(new Set(entries.map((entry) => entry.name)).size, entries.length, `${label}: a planned name repeats`);
  for (const unit of units) {
    const mine = entries.filter((entry) => (entry.run.kind === 'whole' ? entry.name === unit.name : entry.run.of === unit.name));
    assert.ok(mine.length >= 1, `${label}: ${unit.name} is not planned`);
    const [first] = mine;
    if (first?.run.kind === 'whole') {
      assert.equal(mine.length, 1, `${label}: ${unit.name} planned whole and more`);
      continue;
    }
    const parts = first?.run.kind === 'part' || first?.run.kind === 'tests' ? first.run.parts : 0;
    assert.equal(mine.length, parts, `${label}: ${unit.name} should have ${parts} parts`);
    assert.deepEqual(
      mine.map((entry) => (entry.run.kind === 'whole' ? -1 : entry.run.index)).sort((a, b) => a - b),
      Array.from({ length: parts }, (_, i) => i),
      `${label}: ${unit.name} parts are not 0..${parts - 1}`,
    );
    if (unit.split?.kind === 'tests') {
      const all = unit.split.tests.map((test) => test.name);
      const patterns = mine.map((entry) => (entry.run.kind === 'tests' ? new RegExp(entry.run.pattern, 'u') : /(?!)/));
      const lists = mine.map((entry) => (entry.run.kind === 'tests' ? entry.run.tests : []));
      assert.deepEqual(lists.flat().sort(), [...all].sort(), `${label}: ${unit.name} tests lost or repeated`);
      for (const test of all) {
        const matches = patterns.filter((pattern) => pattern.test(test)).length;
        assert.equal(matches, 1, `${label}: ${unit.name} ${test} matched ${matches} times`);
      }
      for (const stray of all.flatMap((test) => [`${test}X`, `X${test}`, test.slice(1)])) {
        if (all.includes(stray)) continue;
        assert.equal(patterns.filter((pattern) => pattern.test(stray)).length, 0, `${label}: ${unit.name} pattern matches ${stray}`);
      }
    }
  }

  // No empty shard while another has two or more; fewer shards only when there are fewer pieces than asked.
  assert.equal(plan.requestedShards, shards);
  assert.equal(plan.shards.length, Math.min(shards, entries.length), `${label}: shard count`);
  for (const shard of plan.shards) assert.ok(shard.units.length >= 1, `${label}: shard ${shard.index} is empty`);
  plan.shards.forEach((shard, index) => assert.equal(shard.index, index));

  // The figures add up, and the makespan is within what the planner proves.
  for (const shard of plan.shards) {
    assert.ok(close(shard.estimate, shard.units.reduce((sum, entry) => sum + entry.estimate, 0)), `${label}: shard sum`);
  }
  assert.ok(close(plan.makespan, Math.max(0, ...plan.shards.map((shard) => shard.estimate))), `${label}: makespan`);
  assert.ok(close(plan.total, entries.reduce((sum, entry) => sum + entry.estimate, 0)), `${label}: total`);
  assert.ok(plan.makespan <= plan.guarantee * (1 + 1e-9) + 1e-9, `${label}: makespan ${plan.makespan} > guarantee ${plan.guarantee}`);
  assert.deepEqual(JSON.parse(JSON.stringify(plan)), plan, `${label}: plan is not plain JSON`);
}

describe('shard planner', () => {
  it('holds its properties on 3,000 seeded random instances', () => {
    let split = 0;
    let fewer = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const instance = randomInstance(seed);
      const plan = planShards(instance.units, instance.shards);
      checkPlan(instance.units, instance.shards, plan, `seed ${seed}`);
      if (!instance.learnedParts) {
        assert.ok(plan.bound <= plan.makespan * (1 + 1e-9) + 1e-9, `seed ${seed}: makespan below the lower bound`);
      }
      assert.deepEqual(planShards(instance.units, instance.shards), plan, `seed ${seed}: not deterministic`);
      if (plan.splits.length > 0) split++;
      if (plan.shards.length < instance.shards) fewer++;
    }
    // The instances exercise what they are meant to: splits, and more shards asked than there are units.
    assert.ok(split > 100, `only ${split} instances split a unit`);
    assert.ok(fewer > 50, `only ${fewer} instances had fewer units than shards`);
  });

  it('is within 4/3 - 1/(3N) of the optimum, found by brute force, on small unsplittable instances', () => {
    for (let seed = 1; seed <= 400; seed++) {
      const random = prng(seed * 7919);
      const shards = 2 + Math.floor(random() * 3);
      const seconds = Array.from({ length: 3 + Math.floor(random() * 6) }, () => Math.round(random() * 100));
      const units = seconds.map((value, i) => ({ name: `u${i}`, seconds: value }));
      const plan = planShards(units, shards);
      const optimum = bruteForceMakespan(seconds, shards);
      assert.ok(plan.makespan <= (4 / 3 - 1 / (3 * shards)) * optimum + 1e-9, `seed ${seed}: ${plan.makespan} vs optimum ${optimum}`);
      assert.ok(plan.makespan >= optimum - 1e-9);
    }
  });

  it('splits the test directory only when it would pin the critical path', () => {
    const units = goLike();
    const total = units.reduce((sum, unit) => sum + (unit.seconds ?? 0), 0);
    for (const shards of [1, 2, 4, 8, 11]) {
      const plan = planShards(units, shards);
      assert.deepEqual(plan.splits, [], `N=${shards}: 150 s is under total/N = ${(total / shards).toFixed(0)} s, no split`);
    }
    for (const shards of [13, 16, 32, 64]) {
      const plan = planShards(units, shards);
      const split = plan.splits.find((entry) => entry.unit === 'test:0_1');
      assert.ok(split !== undefined && split.parts >= 2, `N=${shards}: test:0_1 should be split`);
      checkPlan(units, shards, plan, `N=${shards}`);
      // Cut no further than the longest unsplittable unit (go_test:cmd/go, 105 s) needs: few parts, not 64.
      assert.ok(plan.makespan <= Math.max(total / shards, 105) * 1.05, `N=${shards}: makespan ${plan.makespan}`);
      const part = plan.shards.flatMap((shard) => shard.units).find((entry) => entry.run.kind === 'part');
      assert.ok(part?.run.kind === 'part');
      assert.match(part.name, new RegExp(`^test:\\d+_${split.parts}$`));
      assert.deepEqual(part.run.env, { GO_TEST_SHARDS: String(split.parts) });
    }
    // Splitting without the split model pins every N past 11 at the unit's 150 s.
    assert.equal(planShards(units, 32, { split: false }).makespan, 150);
  });

  it('cuts a unit that dwarfs the rest into as many parts as the target asks, and a package by its tests', () => {
    const tests = Array.from({ length: 40 }, (_, i) => ({ name: `Test${i}`, seconds: 3 }));
    const units: PlanUnit[] = [
      { name: 'big', seconds: 100, split: { kind: 'parts', maxParts: 64, partName: 'big:{i}_{k}', overheadSeconds: 1 } },
      { name: 'pkg', seconds: 122, split: { kind: 'tests', tests, overheadSeconds: 2 } },
      ...Array.from({ length: 20 }, (_, i) => ({ name: `small${i}`, seconds: 1 })),
    ];
    const plan = planShards(units, 10);
    checkPlan(units, 10, plan, 'dwarf');
    // total ~ 242 s + overheads, so about 25 s per shard: big in about 5 parts, pkg in about 5.
    const parts = new Map(plan.splits.map((entry) => [entry.unit, entry.parts]));
    assert.ok((parts.get('big') ?? 0) >= 4 && (parts.get('big') ?? 0) <= 6, `big in ${parts.get('big')} parts`);
    assert.ok((parts.get('pkg') ?? 0) >= 4 && (parts.get('pkg') ?? 0) <= 6, `pkg in ${parts.get('pkg')} parts`);
    assert.ok(plan.makespan <= (plan.total / 10) * 1.1, `makespan ${plan.makespan}, total/10 ${plan.total / 10}`);
    const pkgParts = plan.shards.flatMap((shard) => shard.units).filter((entry) => entry.run.kind === 'tests');
    assert.equal(pkgParts[0]?.name, 'pkg[1/' + String(parts.get('pkg')) + ']');
  });

  it('gives units never seen the median of the learned ones, else a constant, and says so', () => {
    const units = [
      ...[{ name: 'a', seconds: 10 }, { name: 'b', seconds: 30 }, { name: 'c', seconds: 20 }],
      ...[{ name: 'new' }, { name: 'bad', seconds: Number.NaN }],
    ];
    const plan = planShards(units, 2);
    assert.equal(plan.defaultSeconds, 20);
    assert.equal(plan.defaultFrom, 'median');
    assert.deepEqual(plan.defaulted, ['new', 'bad']);
    assert.ok(plan.notes.some((note) => note.includes('2 units never seen, counted as 20 s')));
    const blank = planShards([{ name: 'x' }, { name: 'y' }], 2);
    assert.equal(blank.defaultSeconds, fallbackUnitSeconds);
    assert.equal(blank.defaultFrom, 'constant');
    assert.equal(planShards([{ name: 'x' }], 1, { defaultSeconds: 3 }).makespan, 3);
  });

  it('plans fewer shards than asked when there are fewer units, and says so', () => {
    const plan = planShards([{ name: 'a', seconds: 1 }, { name: 'b', seconds: 2 }, { name: 'c', seconds: 0 }], 8);
    assert.equal(plan.shards.length, 3);
    assert.ok(plan.notes.some((note) => note.startsWith('3 shards of the 8 asked')));
    const empty = planShards([], 4);
    assert.deepEqual([empty.shards.length, empty.makespan, empty.guarantee], [0, 0, 0]);
  });

  it('refuses a bad shard count and duplicate names', () => {
    assert.throws(() => planShards([{ name: 'a' }], 0), RangeError);
    assert.throws(() => planShards([{ name: 'a' }], 2.5), RangeError);
    assert.throws(() => planShards([{ name: 'a' }, { name: 'a' }], 2), /listed twice/);
    const tests = [{ name: 'TestA' }, { name: 'TestA' }];
    assert.throws(() => planShards([{ name: 'p', seconds: 10, split: { kind: 'tests', tests } }], 2), /twice/);
  });

  it('names the test directory parts as Go 1.19 cmd/dist does', () => {
    const split = goTestDirSplit();
    assert.equal(partName(split.partName, 3, 8), 'test:3_8');
    assert.equal(split.countEnv, 'GO_TEST_SHARDS');
  });
});

describe('-run patterns', () => {
  it('select exactly the listed names, metacharacters and all', () => {
    const names = [...awkwardNames, 'TestA', 'TestAB', 'TestB'];
    for (let size = 1; size <= names.length; size++) {
      const chosen = names.filter((_, i) => (i * 7 + size) % names.length < size);
      const pattern = new RegExp(runPattern(chosen), 'u');
      for (const name of names) assert.equal(pattern.test(name), chosen.includes(name), `${runPattern(chosen)} on ${name}`);
    }
    assert.equal(quoteGoRegexp('a.b/c|d'), 'a\\.b\\/c\\|d');
    assert.throws(() => runPattern([]), RangeError);
  });

  it('stay one level and one alternative for Go 1.19 testing, which splits -run on top-level / and |', () => {
    for (const name of awkwardNames) {
      const pattern = runPattern([name, `${name}2`, 'TestPlain']);
      assert.deepEqual(goSplitRegexp(pattern), [[pattern]], pattern);
    }
  });

  it('run exactly the chosen tests with the real go test', async (t) => {
    const go = await run('go', ['version']).then(
      () => 'go',
      () => undefined,
    );
    if (go === undefined) return t.skip('no go toolchain on PATH');
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-run-pattern-'));
    try {
      const names = ['TestA', 'TestAB', 'TestB', 'TestB_c', 'Test_under', 'TestÄ'];
      await writeFile(join(dir, 'go.mod'), 'module example.com/p\n\ngo 1.19\n');
      await writeFile(
        join(dir, 'p_test.go'),
        `package p\n\nimport "testing"\n\n${names.map((name) => `func ${name}(t *testing.T) { t.Run("sub/x", noop) }\n`).join('')}` +
          'func noop(t *testing.T) {}\n',
      );
      const env = { ...process.env, GOFLAGS: '-mod=mod', GOCACHE: join(dir, 'cache'), GOPATH: join(dir, 'gopath'), GOPROXY: 'off' };
      for (const chosen of [['TestA'], ['TestAB', 'TestB_c'], ['TestB', 'TestÄ', 'Test_under']]) {
        const { stdout } = await run('go', ['test', '-count=1', '-v', '-run', runPattern(chosen), '.'], { cwd: dir, env });
        const ran = [...stdout.matchAll(/^=== RUN\s+(\S+)$/gmu)].map((match) => match[1] ?? '');
        assert.deepEqual(ran.filter((name) => !name.includes('/')).sort(), [...chosen].sort(), stdout);
        assert.equal(ran.filter((name) => name.includes('/')).length, chosen.length, 'every subtest of a chosen test runs');
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('learnDuration', () => {
  it('takes the first observation, then moves by the documented weight', () => {
    assert.equal(learnDuration(undefined, 12), 12);
    assert.equal(learnDuration(10, 20), 10 + learnWeight * 10);
    assert.equal(learnDuration(10, 20, 1), 20);
    let learned: number | undefined = 100;
    for (let i = 0; i < 20; i++) learned = learnDuration(learned, 50);
    assert.ok(learned !== undefined && Math.abs(learned - 50) < 0.1, `converges: ${learned}`);
  });

  it('ignores observations that are not durations, and refuses a weight outside (0, 1]', () => {
    assert.equal(learnDuration(10, Number.NaN), 10);
    assert.equal(learnDuration(10, -1), 10);
    assert.equal(learnDuration(undefined, Number.POSITIVE_INFINITY), undefined);
    assert.throws(() => learnDuration(1, 2, 0), RangeError);
    assert.throws(() => learnDuration(1, 2, 1.5), RangeError);
  });
});

describe('shard planner on the recorded Go 1.19 durations', () => {
  it('holds its properties and the bench targets for N = 1..64', async (t) => {
    const text = await readFile(realData, 'utf8').catch(() => undefined);
    if (text === undefined) {
      return t.skip('bench/data/go1.19-linux-amd64-2cpu.json is not recorded yet (node bench/record-go-durations.ts)');
    }
    const recording = parseGoRecording(JSON.parse(text));
    const total = recording.units.reduce((sum, unit) => sum + unit.seconds, 0);
    for (const recordedCountsOnly of [true, false]) {
      const units = goPlanUnits(recording, { recordedCountsOnly });
      for (let shards = 1; shards <= 64; shards++) {
        const plan = planShards(units, shards);
        const label = `N=${shards}${recordedCountsOnly ? '' : ' any count'}`;
        checkPlan(units, shards, plan, label);
        assert.deepEqual(planShards(units, shards), plan, `${label}: not deterministic`);
        const ratio = plan.makespan / plan.bound;
        assert.ok(ratio <= 1.05, `${label}: makespan ${plan.makespan.toFixed(1)} is ${ratio.toFixed(3)} x bound ${plan.bound.toFixed(1)}`);
        if (shards === 16) assert.ok(plan.makespan <= (total / 16) * 1.1, `${label}: ${plan.makespan} > 1.1 x total/16`);
      }
    }
    const parts = testDirParts(recording);
    assert.ok(parts.recordedCounts.length > 0 || recording.parts.length === 0);
  });

  it('splits the test directory exactly when it would pin the critical path', async (t) => {
    const text = await readFile(realData, 'utf8').catch(() => undefined);
    if (text === undefined) return t.skip('bench/data/go1.19-linux-amd64-2cpu.json is not recorded yet');
    const recording = parseGoRecording(JSON.parse(text));
    const units = goPlanUnits(recording, { recordedCountsOnly: true });
    const total = recording.units.reduce((sum, unit) => sum + unit.seconds, 0);
    const testDir = recording.units.find((unit) => unit.name === 'test:0_1')?.seconds ?? 0;
    const longestOther = Math.max(...recording.units.filter((unit) => unit.name !== 'test:0_1').map((unit) => unit.seconds));
    let pinned = 0;
    for (let shards = 1; shards <= 64; shards++) {
      const pins = testDir > Math.max(total / shards, longestOther);
      const split = planShards(units, shards).splits.some((entry) => entry.unit === 'test:0_1');
      assert.equal(split, pins, `N=${shards}: test:0_1 (${testDir} s) ${pins ? 'pins' : 'does not pin'} the critical path`);
      if (pins) pinned++;
    }
    assert.ok(pinned > 0, 'the recording has the test directory pin some N');
  });

  it('names the test directory parts as the recorded listing with GO_TEST_SHARDS does', async (t) => {
    const text = await readFile(realData, 'utf8').catch(() => undefined);
    if (text === undefined) return t.skip('bench/data/go1.19-linux-amd64-2cpu.json is not recorded yet');
    const raw = z.object({ testShards: z.object({ listing: z.array(z.string()) }).nullable() }).safeParse(JSON.parse(text));
    const listed = raw.success ? (raw.data.testShards?.listing ?? []).filter((name) => name.startsWith('test:')) : [];
    if (listed.length === 0) return t.skip('the recording has no GO_TEST_SHARDS listing');
    const template = goTestDirSplit().partName;
    assert.deepEqual(listed, Array.from({ length: listed.length }, (_, i) => partName(template, i, listed.length)));
  });
});

// Go 1.19 testing/match.go splitRegexp: -run is split on / and | outside brackets and parentheses, skipping escapes.
function goSplitRegexp(pattern: string): string[][] {
  const alternatives: string[][] = [];
  let levels: string[] = [];
  let rest = pattern;
  let brackets = 0;
  let parens = 0;
  for (let i = 0; i < rest.length; ) {
    const char = rest[i];
    if (char === '[') brackets++;
    else if (char === ']') brackets = Math.max(0, brackets - 1);
    else if (char === '(' && brackets === 0) parens++;
    else if (char === ')' && brackets === 0) parens--;
    else if (char === '\\') i++;
    else if ((char === '/' || char === '|') && brackets === 0 && parens === 0) {
      levels.push(rest.slice(0, i));
      rest = rest.slice(i + 1);
      i = 0;
      if (char === '|') {
        alternatives.push(levels);
        levels = [];
      }
      continue;
    }
    i++;
  }
  levels.push(rest);
  alternatives.push(levels);
  return alternatives;
}

// The best makespan over every assignment of the jobs to the shards (small instances only).
function bruteForceMakespan(seconds: readonly number[], shards: number): number {
  const loads = new Array<number>(shards).fill(0);
  let best = Number.POSITIVE_INFINITY;
  const place = (job: number) => {
    if (job === seconds.length) {
      best = Math.min(best, Math.max(...loads));
      return;
    }
    const opened = new Set<number>();
    for (let shard = 0; shard < shards; shard++) {
      const load = loads[shard] ?? 0;
      if (opened.has(load)) continue; // shards with equal load are interchangeable
      opened.add(load);
      if (load + (seconds[job] ?? 0) >= best) continue;
      loads[shard] = load + (seconds[job] ?? 0);
      place(job + 1);
      loads[shard] = load;
    }
  };
  place(0);
  return best;
}

// A Go-1.19-like list: 284 units, about 29 minutes, a heavy tail, the `test` directory at 150 s (splittable, with
// 5 s per part), go_test:cmd/go at 105 s as the longest unit that cannot be split.
function goLike(): PlanUnit[] {
  const random = prng(1919);
  const normal = () => Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random());
  const rest = Array.from({ length: 280 }, () => Math.exp(Math.log(2.5) + normal()));
  const scale = (1740 - 392) / rest.reduce((sum, value) => sum + value, 0);
  const units: PlanUnit[] = rest.map((value, i) => ({ name: `go_test:pkg${i}`, seconds: Math.min(60, value * scale) }));
  units.splice(10, 0, { name: 'go_test:cmd/go', seconds: 105 }, { name: 'go_test:runtime', seconds: 92 });
  units.push({ name: 'race', seconds: 45 }, { name: 'test:0_1', seconds: 150, split: goTestDirSplit({ overheadSeconds: 5 }) });
  return units;
}
