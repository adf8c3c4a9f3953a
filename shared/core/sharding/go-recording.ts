// A recorded run of a Go tree's test units (bench/record-go-durations.ts writes it): one wall time per
// `go tool dist test` unit, and the parts of the `test` directory unit when listed with GO_TEST_SHARDS=k. It is the
// benchmark's ground truth and the tests' real data, and the shape a builder's first learned durations can be
// seeded from.
import { z } from 'zod';
import { goTestDirSplit, type PlanUnit } from './planner.ts';

const timingSchema = z.object({ name: z.string().min(1), seconds: z.number().nonnegative(), passed: z.boolean() });

const recordingSchema = z.object({
  goVersion: z.string(),
  cpus: z.number().int().positive(),
  complete: z.boolean().optional(),
  units: z.array(timingSchema).min(1),
  testShards: z.object({ parts: z.array(timingSchema) }).nullable().optional(),
});

/** One unit's recorded wall time in seconds and whether it passed. */
export type UnitTiming = z.infer<typeof timingSchema>;

/** The parts of a recording the planner uses. */
export interface GoRecording {
  readonly goVersion: string;
  readonly cpus: number;
  /** false while the recorder is still running (units may be missing). */
  readonly complete: boolean;
  readonly units: readonly UnitTiming[];
  /** Timings of `test:i_k` parts, for whichever k were recorded. */
  readonly parts: readonly UnitTiming[];
}

// The Go tree's `test` directory unit as `go tool dist test -list` names it without GO_TEST_SHARDS or a builder name.
const testDirUnit = 'test:0_1';

/** Validates a parsed recording. Throws an Error naming the first fields that do not fit. */
export function parseGoRecording(json: unknown): GoRecording {
  const parsed = recordingSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((issue) => `${issue.path.join('.') || '(top)'}: ${issue.message}`);
    throw new Error(`not a Go durations recording: ${issues.join('; ')}`);
  }
  const { goVersion, cpus, complete, units, testShards } = parsed.data;
  return { goVersion, cpus, complete: complete ?? true, units, parts: testShards?.parts ?? [] };
}

/** What a recording says about the parts of the `test` directory unit. */
export interface TestDirParts {
  /** Seconds by part name (`test:i_k`), recorded or derived. */
  readonly seconds: Readonly<Record<string, number>>;
  /** Counts with every part recorded. */
  readonly recordedCounts: readonly number[];
  /** Further counts derived from them (see testDirParts). */
  readonly derivedCounts: readonly number[];
  /** What each part costs beyond its share, estimated from the recorded counts; undefined without any. */
  readonly overheadSeconds: number | undefined;
}

/**
 * The `test` directory's part durations: those recorded, and those of every count k that divides a recorded count
 * K. test/run.go puts a file in part `hash(name) % k`, and for k dividing K that is `(hash % K) % k`, so part i of
 * k runs exactly the files of the parts j of K with j % k = i: its work is theirs, plus one overhead instead of
 * several. The overhead is estimated from the recording (k parts of a W-second unit sum to W + (k - 1) overhead).
 * Never throws.
 */
export function testDirParts(recording: GoRecording): TestDirParts {
  const seconds: Record<string, number> = Object.fromEntries(recording.parts.map((part) => [part.name, part.seconds]));
  const whole = recording.units.find((unit) => unit.name === testDirUnit)?.seconds;
  const recorded = recordedCounts(recording.parts);
  const overheadSeconds = whole === undefined ? undefined : partOverhead(whole, recording.parts, recorded);
  const derived: number[] = [];
  for (const big of recorded) {
    for (let count = 2; count < big; count++) {
      if (big % count !== 0 || recorded.includes(count) || derived.includes(count)) continue;
      for (let index = 0; index < count; index++) {
        let work = 0;
        for (let j = index; j < big; j += count) work += (seconds[`test:${j}_${big}`] ?? 0) - (overheadSeconds ?? 0);
        seconds[`test:${index}_${count}`] = Math.max(0, work) + (overheadSeconds ?? 0);
      }
      derived.push(count);
    }
  }
  return { seconds, recordedCounts: recorded, derivedCounts: derived.sort((a, b) => a - b), overheadSeconds };
}

/**
 * The recording's units as planner input, in listing order, with the `test` directory unit splittable: its
 * recorded and derived parts become learned part durations, with the overhead estimated from them. With
 * `recordedCountsOnly`, the planner may cut it only into counts whose parts were recorded or derived, so a
 * simulation on the recording uses measured work throughout. Never throws.
 */
export function goPlanUnits(recording: GoRecording, options: { recordedCountsOnly?: boolean; maxParts?: number } = {}): PlanUnit[] {
  const parts = testDirParts(recording);
  const counts = [...parts.recordedCounts, ...parts.derivedCounts].sort((a, b) => a - b);
  return recording.units.map((unit) => {
    if (unit.name !== testDirUnit) return { name: unit.name, seconds: unit.seconds };
    const split = goTestDirSplit({
      partSeconds: parts.seconds,
      ...(options.maxParts === undefined ? {} : { maxParts: options.maxParts }),
      ...(options.recordedCountsOnly === true ? { counts } : {}),
      ...(parts.overheadSeconds === undefined ? {} : { overheadSeconds: parts.overheadSeconds }),
    });
    return { name: unit.name, seconds: unit.seconds, split };
  });
}

/** The part counts k for which every part `test:i_k` was recorded, ascending. */
export function recordedCounts(parts: readonly UnitTiming[]): number[] {
  const byCount = new Map<number, Set<number>>();
  for (const part of parts) {
    const match = /^test:(\d+)_(\d+)$/.exec(part.name);
    const [index, count] = [Number(match?.[1]), Number(match?.[2])];
    if (!(count >= 2 && index < count)) continue;
    const seen = byCount.get(count) ?? new Set<number>();
    seen.add(index);
    byCount.set(count, seen);
  }
  return [...byCount].filter(([count, seen]) => seen.size === count).map(([count]) => count).sort((a, b) => a - b);
}

// What each part costs beyond its share: k parts of a unit of W seconds sum to W + (k - 1) * overhead.
function partOverhead(whole: number, parts: readonly UnitTiming[], counts: readonly number[]): number | undefined {
  const estimates = counts.map((count) => {
    const total = parts.filter((part) => partCount(part.name) === count).reduce((sum, part) => sum + part.seconds, 0);
    return (total - whole) / (count - 1);
  });
  if (estimates.length === 0) return undefined;
  return Math.max(0, estimates.reduce((sum, value) => sum + value, 0) / estimates.length);
}

function partCount(name: string): number | undefined {
  const match = /^test:\d+_(\d+)$/.exec(name);
  return match === null ? undefined : Number(match[1]);
}
