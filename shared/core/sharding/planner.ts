// The shard planner: which test units each of N shards runs, so that the slowest shard finishes as close as
// possible to the ideal. Pure logic: no I/O, no clock, no randomness; the same input gives the same plan.
//
// How it plans:
// 1. Every unit gets an estimate: its learned duration, or the default (the median of the learned durations of the
//    units given, which are one builder's; a constant when none is learned).
// 2. Splitting. The target is T = max(planned total / N, the largest floor), where a unit's floor is the smallest
//    its longest piece can get (the unit itself when it cannot be split). While some splittable unit has a piece
//    longer than T, the one with the longest piece is cut into the fewest parts whose longest is <= T. Each part
//    costs an overhead (building the test binary or runner again), so the total grows with every cut, and a unit
//    that does not pin the critical path (it fits under T) is never cut. Then, since whether a cut pays also depends
//    on how the pieces pack, each cut unit is stepped one allowed count down or up while that lowers the makespan.
// 3. LPT: pieces, longest first, each onto the least-loaded shard (ties: fewer pieces, then lower index).
// 4. Improvement: moves and swaps between the most loaded shard and the others, least loaded first, accepted only
//    when both shards end below the old maximum, until none helps. This never raises the makespan and never
//    empties a shard.
//
// What it claims (`ShardPlan.guarantee`, checked by the tests on every plan): with m shards, P the planned total and
// p(m+1) the (m+1)-th longest piece (0 if there are <= m pieces),
//     makespan <= max(longest piece, P/m + (1 - 1/m) * p(m+1)).
// Proof: LPT puts the first m pieces on m distinct shards (an empty shard is least loaded, or ties on load and has
// fewer pieces). Let j be the last piece LPT put on the shard that ends the longest. If j was that shard's first
// piece, the makespan is p(j) <= longest piece. Otherwise j came after the first m, so p(j) <= p(m+1), and the shard
// was the least loaded when j arrived, so its load then was at most the mean of the others' work, (P - p(j))/m; the
// makespan is at most (P - p(j))/m + p(j) <= P/m + (1 - 1/m) p(m+1). The improvement pass only lowers it.
// Against the optimum for the same pieces, LPT is within 4/3 - 1/(3m) (Graham, 1969); the tests check that too,
// by brute force on small instances. Against `ShardPlan.bound`, the ideal below which no plan can go (the largest floor,
// and the unsplit total / N; a true lower bound as long as cutting never saves work, as in the equal-share model),
// the planner is measured, not proved: bench/plan-quality.ts on real durations, and the tests on the same data.

import { runPattern } from './run-pattern.ts';
import { shardPlanVersion, type PlannedRun, type PlannedShard, type ShardPlan } from '../model/shard-plan.ts';


/** Seconds a part costs beyond its share of the unit's work, unless the split or the options say otherwise. */
export const defaultPartOverheadSeconds = 5;

// More parts than this for one package would spend more on building its test binary again than they save.
const defaultMaxTestParts = 64;

/** Seconds assumed for a unit when no unit of the builder has a learned duration (and no default is given). */
export const fallbackUnitSeconds = 10;

/**
 * A unit that divides into any number of parts, each with its own unit name, as Go's `test` directory does:
 * `go tool dist test -list` with GO_TEST_SHARDS=k lists `test:0_k` .. `test:(k-1)_k` (cmd/dist/test.go), and each
 * part runs the files whose name hashes to it (test/run.go `--shard`/`--shards`).
 */
export interface PartsSplit {
  readonly kind: 'parts';
  /** The most parts the planner may cut it into (at least 2 to be splittable). */
  readonly maxParts: number;
  /** Only these part counts (say, those with learned part durations); default every count from 2 to maxParts. */
  readonly counts?: readonly number[] | undefined;
  /** The name of part i of k: `{i}` is replaced by the 0-based index, `{k}` by the count. Go: `test:{i}_{k}`. */
  readonly partName: string;
  /** The variable that must hold k when the parts are listed and run (Go: GO_TEST_SHARDS). */
  readonly countEnv?: string | undefined;
  /** Seconds each part costs beyond its share; defaults to the planner's part overhead. */
  readonly overheadSeconds?: number | undefined;
  /** Learned durations of parts by part name, for whichever counts ran before; others are estimated. */
  readonly partSeconds?: Readonly<Record<string, number>> | undefined;
}

/**
 * A package whose tests can be run in parts with `go test -run`. The list must be every top-level test of the
 * package as this build lists it: each part selects its tests by name (Go 1.19 has no `-skip`, so there is no
 * "everything else" part), and the parts together select exactly the listed tests.
 */
export interface TestsSplit {
  readonly kind: 'tests';
  /** The package's top-level tests, with learned seconds where known. Names must be distinct. */
  readonly tests: readonly { readonly name: string; readonly seconds?: number | undefined }[];
  /** The most parts (default 64, and never more than one per test). */
  readonly maxParts?: number | undefined;
  /** Seconds each part costs beyond its tests (compiling and linking the test binary); defaults as for parts. */
  readonly overheadSeconds?: number | undefined;
}

/** How a unit can be split, if at all. */
export type UnitSplit = PartsSplit | TestsSplit;

/** A test unit as the planner sees it. */
export interface PlanUnit {
  /** The unit's name as the builder lists it (`go_test:archive/tar`, `test:0_1`, a package path). Unique. */
  readonly name: string;
  /** Learned duration in seconds; absent, or not a finite number >= 0, means never seen: the default is used. */
  readonly seconds?: number | undefined;
  /** How it can be split; absent means it runs whole. */
  readonly split?: UnitSplit | undefined;
}

/** Tuning; every field has a documented default. */
export interface PlanOptions {
  /** Seconds a part costs beyond its share, for splits that do not say (default 5). */
  readonly partOverheadSeconds?: number;
  /** Seconds for a unit never seen (default: the median of the learned ones, else 10). */
  readonly defaultSeconds?: number;
  /** false plans every unit whole (default true). */
  readonly split?: boolean;
}

interface Piece {
  readonly name: string;
  readonly run: PlannedRun;
  readonly estimate: number;
  /** Listing order: the unit's position, then the part's. */
  readonly unitOrder: number;
  readonly partOrder: number;
}

interface Splitter {
  /** The part counts it may be cut into, ascending, all >= 2. */
  readonly counts: readonly number[];
  /** The smallest the longest piece can get, over every allowed count (or whole). */
  readonly floor: number;
  pieces(parts: number): readonly Piece[];
}

interface Resolved {
  readonly name: string;
  readonly order: number;
  readonly seconds: number;
  readonly splitter: Splitter | undefined;
}

/**
 * Splits `units` (one builder's, in listing order) into at most `shards` shards, balanced by estimated duration.
 * Every unit appears exactly once, whole or as all of its parts; no shard is empty while another has two or more
 * units; the makespan is at most `ShardPlan.guarantee`. Throws RangeError for a shard count that is not a positive
 * integer, duplicate unit names, or duplicate test names within a unit.
 */
export function planShards(units: readonly PlanUnit[], shards: number, options: PlanOptions = {}): ShardPlan {
  if (!Number.isInteger(shards) || shards < 1) {
    throw new RangeError(`shard count must be a positive integer, got ${shards}`);
  }
  const names = new Set<string>();
  for (const unit of units) {
    if (names.has(unit.name)) throw new RangeError(`unit "${unit.name}" is listed twice`);
    names.add(unit.name);
  }
  const overhead = nonNegative(options.partOverheadSeconds) ?? defaultPartOverheadSeconds;
  const learned = units.map((unit) => nonNegative(unit.seconds)).filter((seconds) => seconds !== undefined);
  const optionDefault = nonNegative(options.defaultSeconds);
  const defaultFrom = optionDefault !== undefined ? 'option' : learned.length > 0 ? 'median' : 'constant';
  const defaultSeconds = optionDefault ?? (learned.length > 0 ? median(learned) : fallbackUnitSeconds);
  const defaulted = units.filter((unit) => nonNegative(unit.seconds) === undefined).map((unit) => unit.name);

  const resolved: Resolved[] = units.map((unit, order) => {
    const seconds = nonNegative(unit.seconds) ?? defaultSeconds;
    const splitter =
      options.split === false || unit.split === undefined ? undefined : makeSplitter(unit, order, seconds, overhead, names);
    return { name: unit.name, order, seconds, splitter };
  });

  const { counts, pieces, loads } = refineParts(resolved, shards, chooseParts(resolved, shards));

  const planned: PlannedShard[] = loads.map((shard, index) => ({
    index,
    units: [...shard.pieces].sort(byListingOrder).map(({ name, run, estimate }) => ({ name, run, estimate })),
    estimate: shard.load,
  }));
  const total = sum(pieces.map((piece) => piece.estimate));
  const unsplitTotal = sum(resolved.map((unit) => unit.seconds));
  const largestFloor = Math.max(0, ...resolved.map(floorOf));
  const sizes = pieces.map((piece) => piece.estimate).sort((a, b) => b - a);
  const used = planned.length;
  const guarantee = used === 0 ? 0 : Math.max(sizes[0] ?? 0, total / used + (1 - 1 / used) * (sizes[used] ?? 0));

  const notes: string[] = [];
  if (used < shards) {
    notes.push(`${plural(used, 'shard')} of the ${shards} asked: there are only ${pieces.length} units to run`);
  }
  if (defaulted.length > 0) {
    const why = { option: 'as configured', median: 'the median of the learned durations', constant: 'none is learned yet' };
    notes.push(`${plural(defaulted.length, 'unit')} never seen, counted as ${round(defaultSeconds)} s each (${why[defaultFrom]})`);
  }
  const splits = resolved
    .filter((unit) => (counts.get(unit.name) ?? 1) > 1)
    .map((unit) => ({ unit: unit.name, parts: counts.get(unit.name) ?? 1 }));

  return {
    version: shardPlanVersion,
    requestedShards: shards,
    shards: planned,
    makespan: Math.max(0, ...planned.map((shard) => shard.estimate)),
    total,
    bound: Math.max(largestFloor, unsplitTotal / shards),
    guarantee,
    defaultSeconds,
    defaultFrom,
    defaulted,
    splits,
    notes,
  };
}

/** The splitter for Go's `test` directory unit: parts named `test:{i}_{k}`, counted by GO_TEST_SHARDS. */
export function goTestDirSplit(
  options: {
    maxParts?: number;
    counts?: readonly number[];
    overheadSeconds?: number;
    partSeconds?: Readonly<Record<string, number>>;
  } = {},
): PartsSplit {
  return {
    kind: 'parts',
    maxParts: options.maxParts ?? 64,
    counts: options.counts,
    partName: 'test:{i}_{k}',
    countEnv: 'GO_TEST_SHARDS',
    overheadSeconds: options.overheadSeconds,
    partSeconds: options.partSeconds,
  };
}

/** The name of part `index` of `parts` under a `{i}`/`{k}` template. */
export function partName(template: string, index: number, parts: number): string {
  return template.replaceAll('{i}', String(index)).replaceAll('{k}', String(parts));
}

// Cuts the unit with the longest piece above the target into the fewest parts that fit under it, until none is
// above. A unit's count only grows, so this ends after at most sum(counts) steps; in practice one per unit.
function chooseParts(units: readonly Resolved[], shards: number): Map<string, number> {
  const counts = new Map<string, number>();
  const longest = (unit: Resolved): number => {
    const parts = counts.get(unit.name) ?? 1;
    return parts === 1 || unit.splitter === undefined ? unit.seconds : maxEstimate(unit.splitter.pieces(parts));
  };
  const work = (unit: Resolved): number => {
    const parts = counts.get(unit.name) ?? 1;
    if (parts === 1 || unit.splitter === undefined) return unit.seconds;
    return sum(unit.splitter.pieces(parts).map((piece) => piece.estimate));
  };
  const largestFloor = Math.max(0, ...units.map(floorOf));
  const exhausted = new Set<string>();
  let total = sum(units.map((unit) => unit.seconds));
  for (;;) {
    const target = Math.max(total / shards, largestFloor);
    let pick: Resolved | undefined;
    for (const unit of units) {
      if (unit.splitter === undefined || exhausted.has(unit.name)) continue;
      if (longest(unit) <= target * (1 + 1e-9)) continue;
      if (pick === undefined || longest(unit) > longest(pick)) pick = unit;
    }
    if (pick?.splitter === undefined) return counts;
    const from = counts.get(pick.name) ?? 1;
    const { splitter } = pick;
    const above = splitter.counts.filter((parts) => parts > from);
    let to = above.find((parts) => maxEstimate(splitter.pieces(parts)) <= target * (1 + 1e-9));
    if (to === undefined) {
      // Only when learned part durations make the longest part uneven across counts: take the best count above.
      exhausted.add(pick.name);
      to = from;
      for (const parts of above) if (maxEstimate(splitter.pieces(parts)) < longest(pick)) to = parts;
      if (to === from) continue;
    }
    total -= work(pick);
    counts.set(pick.name, to);
    total += work(pick);
  }
}

interface Assignment {
  readonly counts: ReadonlyMap<string, number>;
  readonly pieces: readonly Piece[];
  readonly loads: readonly ShardLoad[];
  readonly makespan: number;
}

function assign(units: readonly Resolved[], shards: number, counts: ReadonlyMap<string, number>): Assignment {
  const pieces = units.flatMap((unit) => {
    const parts = counts.get(unit.name) ?? 1;
    return unit.splitter === undefined || parts === 1 ? [wholePiece(unit)] : [...unit.splitter.pieces(parts)];
  });
  const loads = improve(assignLongestFirst(pieces, shards));
  return { counts, pieces, loads, makespan: Math.max(0, ...loads.map((shard) => shard.load)) };
}

// The target rule cuts by size alone; whether a cut pays also depends on how the pieces pack. So step a unit one
// allowed count down (back to whole at the end) or up, and keep the change that lowers the makespan most, until none
// does. Only units already cut, or sitting on the longest shard, are stepped (cutting any other unit adds work and
// frees no room where it matters), so a round costs a few assignments whatever the number of splittable units.
function refineParts(units: readonly Resolved[], shards: number, initial: ReadonlyMap<string, number>): Assignment {
  let best = assign(units, shards, initial);
  for (let round = 0; round < 16; round++) {
    let longestShard: ShardLoad | undefined;
    for (const shard of best.loads) if (longestShard === undefined || shard.load > longestShard.load) longestShard = shard;
    const critical = new Set(longestShard?.pieces.map((piece) => piece.unitOrder));
    let next: Assignment | undefined;
    for (const unit of units) {
      if (unit.splitter === undefined) continue;
      const counts = [1, ...unit.splitter.counts];
      const at = counts.indexOf(best.counts.get(unit.name) ?? 1);
      const steps = [...(at > 0 ? [at - 1] : []), ...(at > 0 || critical.has(unit.order) ? [at + 1] : [])];
      for (const step of steps) {
        const parts = counts[step];
        if (parts === undefined) continue;
        const candidate = assign(units, shards, new Map([...best.counts, [unit.name, parts]]));
        if (candidate.makespan < (next ?? best).makespan - 1e-9 * Math.max(1, best.makespan)) next = candidate;
      }
    }
    if (next === undefined) break;
    best = next;
  }
  return best;
}

function makeSplitter(
  unit: PlanUnit,
  order: number,
  seconds: number,
  defaultOverhead: number,
  taken: ReadonlySet<string>,
): Splitter | undefined {
  const split = unit.split;
  if (split === undefined) return undefined;
  const overhead = nonNegative(split.overheadSeconds) ?? defaultOverhead;
  const memo = new Map<number, readonly Piece[]>();
  const memoized = (make: (parts: number) => readonly Piece[]) => (parts: number) => {
    let pieces = memo.get(parts);
    if (pieces === undefined) {
      pieces = make(parts);
      memo.set(parts, pieces);
    }
    return pieces;
  };

  if (split.kind === 'parts') {
    const maxParts = Math.floor(split.maxParts);
    const counts = (split.counts ?? Array.from({ length: Math.max(0, maxParts - 1) }, (_, i) => i + 2))
      .filter((parts) => Number.isInteger(parts) && parts >= 2 && parts <= maxParts)
      .sort((a, b) => a - b)
      .filter((parts, i, all) => parts !== all[i - 1])
      // A part must not take the name of another listed unit (a list made with GO_TEST_SHARDS already set).
      .filter((parts) => Array.from({ length: parts }, (_, i) => partName(split.partName, i, parts)).every((n) => !taken.has(n)));
    if (counts.length === 0) return undefined;
    // A part with no learned duration gets an equal share of the unit's work plus the overhead each part pays;
    // the unit's own duration already holds one overhead.
    const share = (parts: number) => Math.max(0, seconds - overhead) / parts + overhead;
    const pieces = memoized((parts) =>
      Array.from({ length: parts }, (_, index): Piece => {
        const name = partName(split.partName, index, parts);
        const env: Record<string, string> = split.countEnv === undefined ? {} : { [split.countEnv]: String(parts) };
        return {
          name,
          run: { kind: 'part', of: unit.name, index, parts, env },
          estimate: nonNegative(split.partSeconds?.[name]) ?? share(parts),
          unitOrder: order,
          partOrder: index,
        };
      }),
    );
    const floor = Math.min(seconds, ...counts.map((parts) => maxEstimate(pieces(parts))));
    return { counts, floor, pieces };
  }

  const tests = split.tests;
  const seen = new Set<string>();
  for (const test of tests) {
    if (seen.has(test.name)) throw new RangeError(`unit "${unit.name}" lists test "${test.name}" twice`);
    seen.add(test.name);
  }
  const maxParts = Math.min(tests.length, Math.floor(split.maxParts ?? defaultMaxTestParts));
  if (!(maxParts >= 2)) return undefined;
  // Tests never timed share what the unit's learned time leaves after the known tests and one overhead.
  const known = tests.map((test) => nonNegative(test.seconds));
  const unknownCount = known.filter((seconds) => seconds === undefined).length;
  const left = Math.max(0, seconds - overhead - sum(known.map((value) => value ?? 0)));
  const spread = unknownCount === 0 ? 0 : left / unknownCount;
  const timed = tests.map((test, position) => ({ name: test.name, position, seconds: known[position] ?? spread }));
  const longestFirst = [...timed].sort((a, b) => b.seconds - a.seconds || a.position - b.position);
  const pieces = memoized((parts) => {
    const bins = Array.from({ length: parts }, () => ({ load: 0, tests: [] as (typeof timed)[number][] }));
    for (const test of longestFirst) {
      let best = bins[0];
      for (const bin of bins) {
        if (best === undefined || bin.load < best.load || (bin.load === best.load && bin.tests.length < best.tests.length)) {
          best = bin;
        }
      }
      if (best === undefined) break;
      best.load += test.seconds;
      best.tests.push(test);
    }
    return bins.map((bin, index): Piece => {
      const names = bin.tests.sort((a, b) => a.position - b.position).map((test) => test.name);
      return {
        // Not a listed unit's name: learned per test, not per part, since the partition changes with the count.
        name: `${unit.name}[${index + 1}/${parts}]`,
        run: { kind: 'tests', of: unit.name, index, parts, pattern: runPattern(names), tests: names },
        estimate: overhead + bin.load,
        unitOrder: order,
        partOrder: index,
      };
    });
  });
  // Every partition has a part holding the longest test, and one test per part reaches exactly that.
  const floor = Math.min(seconds, overhead + (longestFirst[0]?.seconds ?? 0));
  return { counts: Array.from({ length: maxParts - 1 }, (_, i) => i + 2), floor, pieces };
}

interface ShardLoad {
  load: number;
  pieces: Piece[];
}

// LPT: longest piece first onto the least-loaded shard; an empty shard always wins a tie, so each of the first
// min(N, pieces) pieces opens its own shard and no shard stays empty.
function assignLongestFirst(pieces: readonly Piece[], shards: number): ShardLoad[] {
  const count = Math.min(shards, pieces.length);
  const loads: ShardLoad[] = Array.from({ length: count }, () => ({ load: 0, pieces: [] }));
  const ordered = [...pieces].sort((a, b) => b.estimate - a.estimate || byListingOrder(a, b));
  for (const piece of ordered) {
    let best: ShardLoad | undefined;
    for (const shard of loads) {
      const lighter = best === undefined || shard.load < best.load;
      if (lighter || (shard.load === best?.load && shard.pieces.length < best.pieces.length)) best = shard;
    }
    if (best === undefined) break;
    best.load += piece.estimate;
    best.pieces.push(piece);
  }
  return loads;
}

// Moves a piece from the most loaded shard, or swaps one of its pieces for a shorter one, with the first shard
// (least loaded first) where that leaves both below the old maximum; the best such change for that pair wins.
// Every change lowers the sorted vector of loads, so this ends; the round cap only bounds the cost.
function improve(loads: ShardLoad[]): ShardLoad[] {
  const rounds = 20 * loads.reduce((count, shard) => count + shard.pieces.length, 0);
  for (let round = 0; round < rounds; round++) {
    let top: ShardLoad | undefined;
    for (const shard of loads) if (top === undefined || shard.load > top.load) top = shard;
    if (top === undefined || !improvePair(top, loads)) break;
  }
  // Loads were kept by adding and subtracting; recompute them so a shard's estimate is its pieces' exact sum.
  for (const shard of loads) shard.load = sum(shard.pieces.map((piece) => piece.estimate));
  return loads;
}

function improvePair(top: ShardLoad, loads: readonly ShardLoad[]): boolean {
  const peak = top.load;
  const epsilon = 1e-9 * Math.max(1, peak);
  const others = loads
    .map((shard, index) => ({ shard, index }))
    .filter(({ shard }) => shard !== top)
    .sort((a, b) => a.shard.load - b.shard.load || a.index - b.index);
  for (const { shard: other } of others) {
    let bestPeak = peak - epsilon;
    let from = -1;
    let to = -1;
    for (let i = 0; i < top.pieces.length; i++) {
      const piece = top.pieces[i];
      if (piece === undefined) continue;
      if (top.pieces.length >= 2) {
        const after = Math.max(peak - piece.estimate, other.load + piece.estimate);
        if (after < bestPeak) [bestPeak, from, to] = [after, i, -1];
      }
      for (let j = 0; j < other.pieces.length; j++) {
        const swap = other.pieces[j];
        if (swap === undefined || swap.estimate >= piece.estimate) continue;
        const delta = piece.estimate - swap.estimate;
        const after = Math.max(peak - delta, other.load + delta);
        if (after < bestPeak) [bestPeak, from, to] = [after, i, j];
      }
    }
    if (from < 0) continue;
    const [moving] = top.pieces.splice(from, 1);
    const [back] = to < 0 ? [] : other.pieces.splice(to, 1);
    if (moving !== undefined) {
      other.pieces.push(moving);
      top.load -= moving.estimate;
      other.load += moving.estimate;
    }
    if (back !== undefined) {
      top.pieces.push(back);
      other.load -= back.estimate;
      top.load += back.estimate;
    }
    return true;
  }
  return false;
}

function wholePiece(unit: Resolved): Piece {
  return { name: unit.name, run: { kind: 'whole' }, estimate: unit.seconds, unitOrder: unit.order, partOrder: 0 };
}

function floorOf(unit: Resolved): number {
  return unit.splitter?.floor ?? unit.seconds;
}

function byListingOrder(a: Piece, b: Piece): number {
  return a.unitOrder - b.unitOrder || a.partOrder - b.partOrder;
}

function maxEstimate(pieces: readonly Piece[]): number {
  return Math.max(0, ...pieces.map((piece) => piece.estimate));
}

function sum(values: readonly number[]): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

function nonNegative(value: number | undefined): number | undefined {
  return value !== undefined && Number.isFinite(value) && value >= 0 ? value : undefined;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
