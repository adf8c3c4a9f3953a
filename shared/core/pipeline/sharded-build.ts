import { snapshotKey } from '../model/ids.ts';
import type { Build, Builder, Sharding, Task, TestSuite } from '../model/types.ts';
import { blobKeys } from '../model/wire.ts';
import type { BlobStore } from '../../ports/blobs.ts';
import type { Compute } from '../../ports/compute.ts';
import { planShards } from '../sharding/planner.ts';
import type { ShardPlan, PlannedUnit } from '../model/shard-plan.ts';
import { parseListing, planUnitsOf, type ListedUnit } from '../sharding/test-suites.ts';
import { buildFields } from './log-fields.ts';
import type { PipelineDeps } from './deps.ts';
import { learnedDurations } from './durations.ts';
import { newTask } from './new-task.ts';

/** The step name of a sharded build's make task. */
export const makeStep = 'make';

/** The step name of shard `index`'s task. */
export const shardStep = (index: number): string => `shard-${index}`;

/** The step name of the task that re-runs a shard's failed units: `shard-3` -> `retry-3`. */
export const retryStepOf = (step: string): string => step.replace(/^shard-/, 'retry-');

/** The host type a builder's tasks run on here: its own, else its fallback; undefined when neither runs here. */
export function hostTypeFor(builder: Builder, compute: Pick<Compute, 'hostTypes'>): string | undefined {
  return [builder.hostType, builder.fallbackHostType].find(
    (candidate) => candidate !== undefined && compute.hostTypes.includes(candidate),
  );
}

/**
 * The snapshot key of a build on a sharded builder: its tree (its commit when the tree is not known) and everything
 * about how the builder makes it, but not the builder's name or shard counts, so builders that differ only in how
 * they shard share one snapshot.
 */
export function snapshotKeyFor(build: Build, builder: Builder, suite: TestSuite, hostType: string): string {
  const recipe = { hostType, kind: suite.kind, make: suite.make, list: suite.list, env: builder.env, exclude: suite.snapshotExclude };
  return snapshotKey(build.tree ?? `commit:${build.commit}`, recipe);
}

/** The tasks a sharded build is waiting on in its phase: the make task, the shards, or the retries. */
export function currentTaskIds(sharding: Sharding): string[] {
  switch (sharding.phase) {
    case 'make':
      return sharding.makeTaskId === undefined ? [] : [sharding.makeTaskId];
    case 'test':
      return sharding.shardTaskIds ?? [];
    case 'retry':
      return sharding.retryTaskIds ?? [];
    case 'merged':
      return [];
  }
}

/** A plan, the first attempt of each of its shard tasks, and every planned unit's name in listing order. */
export interface PlannedTests {
  plan: ShardPlan;
  tasks: Task[];
  order: string[];
  /** Units a trybot asked for by name that the listing does not have: the build fails naming them, running none. */
  missing: string[];
}

/**
 * Plans the listed units into the builder's shard count (its trybot count for a trybot build), balanced by what the
 * builder has learned of each unit's duration, and makes each shard's first task. A make-only build plans none.
 */
export async function planTests(
  deps: Pick<PipelineDeps, 'state' | 'now'>,
  build: Build,
  suite: TestSuite,
  listed: readonly ListedUnit[],
): Promise<PlannedTests> {
  if (build.mode?.kind === 'make') return { plan: planShards([], 1), tasks: [], order: [], missing: [] };
  const wanted = build.mode?.kind === 'tests' ? new Set(build.mode.tests) : undefined;
  const missing = wanted === undefined ? [] : [...wanted].filter((name) => !listed.some((unit) => unit.name === name));
  if (missing.length > 0) return { plan: planShards([], 1), tasks: [], order: [], missing };
  const chosen = wanted === undefined ? listed : listed.filter((unit) => wanted.has(unit.name));
  const learned = await learnedDurations(deps.state, build.builder);
  const units = planUnitsOf(suite.kind, chosen, learned);
  const plan = planShards(units, build.trybot === true ? suite.shards.trybot : suite.shards.postSubmit);
  const now = deps.now();
  const tasks = plan.shards.map((shard) => newTask(build, shardStep(shard.index), 1, now, [...shard.units]));
  const position = new Map(listed.map((unit, index) => [unit.name, index]));
  const place = (unit: PlannedUnit) => position.get(unit.run.kind === 'whole' ? unit.name : unit.run.of) ?? 0;
  const part = (unit: PlannedUnit) => (unit.run.kind === 'whole' ? 0 : unit.run.index);
  const order = plan.shards
    .flatMap((shard) => shard.units)
    .sort((a, b) => place(a) - place(b) || part(a) - part(b))
    .map((unit) => unit.name);
  return { plan, tasks, order, missing };
}

/**
 * The build moved into its test phase with `planned`: the plan recorded and the shard tasks current. A listing with
 * no units leaves nothing to run, and the build passes as it stands.
 */
export function enterTests(build: Build, sharding: Sharding, planned: PlannedTests, now: number): Build {
  const next: Sharding = {
    ...sharding,
    phase: 'test',
    plan: planned.plan,
    units: planned.order,
    shardTaskIds: planned.tasks.map((task) => task.id),
    testsStartedAt: now,
  };
  if (planned.missing.length > 0) {
    const reason = `no test unit named ${planned.missing.map((name) => `"${name}"`).join(', ')} in the listing`;
    return { ...build, sharding: { ...next, phase: 'merged' }, status: 'failed', reason, finishedAt: now };
  }
  if (planned.tasks.length === 0) {
    return { ...build, sharding: { ...next, phase: 'merged' }, status: 'passed', reason: 'no test units were listed', finishedAt: now };
  }
  return { ...build, sharding: next, attempts: build.attempts + planned.tasks.length };
}

/** The units listed from a snapshot's tree, when both the snapshot and its listing are in place; else undefined. */
export async function readListing(blobs: BlobStore, key: string): Promise<ListedUnit[] | undefined> {
  const bytes = await blobs.get(blobKeys.snapshotUnits(key));
  if (bytes === undefined || !(await blobs.exists(blobKeys.snapshot(key)))) return undefined;
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as ListedUnit[];
}

/**
 * The units in a make worker's captured output, stored beside its snapshot so a later build of the same tree can
 * skip making. Throws an Error saying what is wrong with the output.
 */
export async function keepListing(blobs: BlobStore, suite: TestSuite, key: string, output: string): Promise<ListedUnit[]> {
  const listed = parseListing(suite.kind, output);
  await blobs.put(blobKeys.snapshotUnits(key), JSON.stringify(listed));
  return listed;
}

/** Log fields of a build whose shards were just planned. */
export function plannedFields(build: Build, planned: PlannedTests, snapshot: 'made' | 'reused') {
  return {
    ...buildFields(build),
    units: planned.order.length,
    shards: planned.plan.shards.length,
    makespan: Math.round(planned.plan.makespan),
    snapshot,
  };
}
