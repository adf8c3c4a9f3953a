/** The shard plan a sharded build records: which units each shard runs, with the planner's estimates. */

/** The version of the plan's shape, recorded with it. */
export const shardPlanVersion = 1;

/** What one planned unit runs: the unit as listed, one of its parts, or a `-run` subset of its tests. */
export type PlannedRun =
  | { readonly kind: 'whole' }
  | {
      readonly kind: 'part';
      /** The unit it is a part of. */
      readonly of: string;
      readonly index: number;
      readonly parts: number;
      /** Variables to set when listing and running it (the part count). */
      readonly env: Readonly<Record<string, string>>;
    }
  | {
      readonly kind: 'tests';
      readonly of: string;
      readonly index: number;
      readonly parts: number;
      /** The `-run` pattern: `^(TestA|TestB)$`, names escaped. */
      readonly pattern: string;
      /** The tests it selects, in the package's order. */
      readonly tests: readonly string[];
    };

/** One entry of a shard: a name to report it under, what to run, and its estimate in seconds. */
export interface PlannedUnit {
  readonly name: string;
  readonly run: PlannedRun;
  readonly estimate: number;
}

/** One shard: its index (0-based), its units in the builder's listing order, and its estimated seconds. */
export interface PlannedShard {
  readonly index: number;
  readonly units: readonly PlannedUnit[];
  readonly estimate: number;
}

/** The plan, recorded with the build: plain JSON. All durations are estimated seconds. */
export interface ShardPlan {
  readonly version: typeof shardPlanVersion;
  /** The N asked for; `shards` has fewer entries when there are fewer pieces than N. */
  readonly requestedShards: number;
  readonly shards: readonly PlannedShard[];
  /** The longest shard's estimate. */
  readonly makespan: number;
  /** The sum of all planned units' estimates (part overheads included). */
  readonly total: number;
  /** The ideal: max(the largest floor, the unsplit total / N); no plan beats it unless cutting saves work. */
  readonly bound: number;
  /** What the planner proves: makespan <= max(longest piece, total/m + (1 - 1/m) * (m+1)-th longest piece). */
  readonly guarantee: number;
  /** The seconds given to units never seen, and why that value. */
  readonly defaultSeconds: number;
  readonly defaultFrom: 'option' | 'median' | 'constant';
  /** Units that had no learned duration. */
  readonly defaulted: readonly string[];
  /** Units that were cut, and into how many parts. */
  readonly splits: readonly { readonly unit: string; readonly parts: number }[];
  /** Anything a reader of the plan should know (fewer shards than asked, defaults used). */
  readonly notes: readonly string[];
}
