// A sharded build's results put back together: each unit's verdict over its first run and its retry, the build's
// verdict and its figures, and the merged log that reads like one run. Pure: the caller reads the tasks and logs.
import type { Build, BuildStatus, Task, TestSuiteKind, TestSummary, UnitResult } from '../model/types.ts';
import type { PlannedUnit } from '../model/shard-plan.ts';
import { mergedUnitOutputs, wholeSecondsOfParts } from '../sharding/test-suites.ts';

/** One planned unit over the build: where it ran first, how, and its retry if it had one. */
export interface UnitVerdict {
  unit: PlannedUnit;
  /** The shard task that ran it first, and how it ended there. */
  task: Task;
  first: UnitResult;
  retryTask?: Task;
  retry?: UnitResult;
  verdict: 'passed' | 'failed' | 'flaky';
}

/**
 * Every planned unit's verdict, in `order` (the listing's): passed on its first run; flaky when it failed first and
 * passed on its retry; failed otherwise. A unit whose shard left no result counts as not run, so as failed.
 */
export function unitVerdicts(order: readonly string[], shards: readonly Task[], retries: readonly Task[]): UnitVerdict[] {
  const firsts = runsByUnit(shards);
  const seconds = runsByUnit(retries);
  return order.flatMap((name) => {
    const first = firsts.get(name);
    if (first === undefined) return [];
    const retry = seconds.get(name);
    const verdict = first.result.status === 'passed' ? 'passed' : retry?.result.status === 'passed' ? 'flaky' : 'failed';
    return [
      {
        unit: first.unit,
        task: first.task,
        first: first.result,
        ...(retry === undefined ? {} : { retryTask: retry.task, retry: retry.result }),
        verdict,
      },
    ];
  });
}

function runsByUnit(tasks: readonly Task[]): Map<string, { unit: PlannedUnit; task: Task; result: UnitResult }> {
  const runs = new Map<string, { unit: PlannedUnit; task: Task; result: UnitResult }>();
  for (const task of tasks) {
    for (const [index, unit] of (task.units ?? []).entries()) {
      const result = task.unitResults?.[index] ?? { name: unit.name, status: 'not-run', durationMs: 0, exitCode: null };
      runs.set(unit.name, { unit, task, result });
    }
  }
  return runs;
}

/** The units of the first run that did not pass, grouped by the shard task that ran them. */
export function failedByShard(verdicts: readonly UnitVerdict[]): Map<Task, PlannedUnit[]> {
  const groups = new Map<Task, PlannedUnit[]>();
  for (const verdict of verdicts) {
    if (verdict.first.status === 'passed') continue;
    groups.set(verdict.task, [...(groups.get(verdict.task) ?? []), verdict.unit]);
  }
  return groups;
}

/** The build's verdict over its units' verdicts, with a reason naming the units that were not plain passes. */
export function buildVerdict(verdicts: readonly UnitVerdict[]): { status: BuildStatus; reason?: string } {
  const failed = verdicts.filter((verdict) => verdict.verdict === 'failed').map((verdict) => verdict.unit.name);
  const flaky = verdicts.filter((verdict) => verdict.verdict === 'flaky').map((verdict) => verdict.unit.name);
  const of = `of ${verdicts.length} unit${verdicts.length === 1 ? '' : 's'}`;
  const flakyText = `${flaky.length} ${of} flaky (failed, then passed on a fresh worker): ${names(flaky)}`;
  if (failed.length > 0) {
    const reason = `${failed.length} ${of} failed: ${names(failed)}`;
    return { status: 'failed', reason: flaky.length === 0 ? reason : `${reason}; ${flakyText}` };
  }
  if (flaky.length > 0) return { status: 'flaky', reason: flakyText };
  return { status: 'passed' };
}

function names(list: readonly string[]): string {
  const shown = list.slice(0, 5).join(', ');
  return list.length > 5 ? `${shown} and ${list.length - 5} more` : shown;
}

/** The figures of a merged run. `testsStartedAt` is when the shards were made; `make` the make task, if one ran. */
export function testSummary(input: {
  verdicts: readonly UnitVerdict[];
  shards: readonly Task[];
  retries: readonly Task[];
  make: Task | undefined;
  testsStartedAt: number;
  estimatedMakespanSeconds: number;
}): TestSummary {
  const { verdicts, shards, retries } = input;
  const ran = (task: Task) => (task.startedAt !== undefined && task.workerFinishedAt !== undefined ? task.workerFinishedAt - task.startedAt : 0);
  const ends = [...shards, ...retries].map((task) => task.finishedAt ?? input.testsStartedAt);
  let aggregateMs = 0;
  for (const verdict of verdicts) aggregateMs += verdict.first.durationMs + (verdict.retry?.durationMs ?? 0);
  return {
    units: verdicts.length,
    passed: verdicts.filter((verdict) => verdict.verdict === 'passed').length,
    failed: verdicts.filter((verdict) => verdict.verdict === 'failed').length,
    flaky: verdicts.filter((verdict) => verdict.verdict === 'flaky').length,
    retried: verdicts.filter((verdict) => verdict.retry !== undefined).length,
    wallMs: Math.max(0, Math.max(input.testsStartedAt, ...ends) - input.testsStartedAt),
    aggregateMs,
    makeMs: input.make === undefined ? 0 : ran(input.make),
    makespanMs: Math.max(0, ...shards.map(ran)),
    estimatedMakespanMs: Math.round(input.estimatedMakespanSeconds * 1000),
  };
}

/**
 * What the build teaches about its units' durations, in seconds by the name the planner looks up: each unit that
 * ran to its end on its first run, and, for a unit cut into parts, the whole unit too (its parts' sum, less their
 * extra overheads) when every part ran to its end.
 */
export function observedSeconds(verdicts: readonly UnitVerdict[]): Map<string, number> {
  const observed = new Map<string, number>();
  const parts = new Map<string, number[]>();
  const incomplete = new Set<string>();
  for (const { unit, first } of verdicts) {
    const ended = first.status === 'passed' || first.status === 'failed';
    const seconds = first.durationMs / 1000;
    if (unit.run.kind === 'whole') {
      if (ended) observed.set(unit.name, seconds);
      continue;
    }
    // A `-run` part's tests change with the part count, so only the whole package is learned from it.
    if (unit.run.kind === 'part' && ended) observed.set(unit.name, seconds);
    if (!ended) incomplete.add(unit.run.of);
    parts.set(unit.run.of, [...(parts.get(unit.run.of) ?? []), seconds]);
  }
  for (const [whole, seconds] of parts) if (!incomplete.has(whole)) observed.set(whole, wholeSecondsOfParts(seconds));
  return observed;
}

/** What the merged log is made from. */
export interface MergedLogInput {
  build: Build;
  kind: TestSuiteKind;
  verdicts: readonly UnitVerdict[];
  summary: TestSummary;
  shards: number;
  snapshotReused: boolean;
  /** Each task's whole log as uploaded, by task ID; a task missing here left none. */
  logs: ReadonlyMap<string, Buffer>;
  /** Turns a task ID into its log's address on the dashboard. */
  logUrl: (taskId: string) => string;
  verdict: BuildStatus;
}

/**
 * The merged log: a heading, every unit's output in listing order (as the suite tidies it, so it reads like one
 * run), the retries' output, and a summary ending with the wall time, the aggregate time and the time saved.
 */
export function composeMergedLog(input: MergedLogInput): string {
  const { build, summary, verdicts } = input;
  const out: string[] = [];
  const making = input.snapshotReused ? 'snapshot reused from an earlier build of this tree' : `make took ${duration(summary.makeMs)}`;
  out.push(`hermetic: ${build.repo} ${build.commit.slice(0, 12)} on ${build.builder}: ${plural(summary.units, 'test unit')} in ${plural(input.shards, 'shard')}; ${making}\n\n`);
  out.push(mergedUnitOutputs(input.kind, verdicts.map((verdict) => sectionOf(input.logs, verdict.task, verdict.first))));
  const retried = verdicts.filter((verdict) => verdict.retry !== undefined);
  if (retried.length > 0) {
    out.push(`\n##### Failed units, run again on a fresh worker\n`);
    for (const verdict of retried) {
      if (verdict.retryTask === undefined || verdict.retry === undefined) continue;
      out.push(`\n--- ${verdict.unit.name}: ${verdict.retry.status} on the retry (${verdict.retryTask.step})\n`);
      out.push(mergedUnitOutputs(input.kind, [sectionOf(input.logs, verdict.retryTask, verdict.retry)]));
    }
  }
  out.push('\n##### Summary\n');
  for (const verdict of verdicts) {
    if (verdict.verdict === 'passed') continue;
    const label = verdict.verdict === 'flaky' ? 'FLAKY' : 'FAIL ';
    const first = `${verdict.first.status} on ${verdict.task.step} (${input.logUrl(verdict.task.id)})`;
    const retry =
      verdict.retryTask === undefined || verdict.retry === undefined
        ? 'not retried'
        : `${verdict.retry.status} on the retry (${input.logUrl(verdict.retryTask.id)})`;
    out.push(`${label} ${verdict.unit.name}: ${first}, then ${retry}\n`);
  }
  out.push(`${plural(summary.units, 'unit')}: ${summary.passed} passed, ${summary.failed} failed, ${summary.flaky} flaky\n`);
  out.push(
    `${plural(input.shards, 'shard')}: the slowest took ${duration(summary.makespanMs)} (planned ${duration(summary.estimatedMakespanMs)})` +
      `${input.snapshotReused ? '' : `; make ${duration(summary.makeMs)}, not counted below`}\n`,
  );
  out.push(`${input.verdict.toUpperCase()}\n`);
  const saved = summary.aggregateMs - summary.wallMs;
  out.push(
    `wall time ${duration(summary.wallMs)}, aggregate time ${duration(summary.aggregateMs)}, ` +
      `time saved ${saved >= 0 ? duration(saved) : `none (${duration(-saved)} lost to sharding)`}\n`,
  );
  return out.join('');
}

/** One unit's own output, cut from its task's log by the offsets the worker reported. */
function sectionOf(logs: ReadonlyMap<string, Buffer>, task: Task, result: UnitResult): string {
  if (result.status === 'not-run') return `[hermetic: ${result.name} was not run: ${task.step} ended first (${task.status})]\n`;
  const log = logs.get(task.id);
  if (log === undefined || result.log === undefined) return `[hermetic: ${result.name} left no output (${result.status})]\n`;
  const text = log.subarray(Math.min(result.log.start, log.length), Math.min(result.log.end, log.length)).toString('utf8');
  if (result.log.end <= log.length) return text;
  return `${ensureNewline(text)}[hermetic: the rest of ${result.name}'s output was cut with ${task.step}'s log]\n`;
}

function ensureNewline(text: string): string {
  return text === '' || text.endsWith('\n') ? text : `${text}\n`;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** ms as `1m02.3s` or `4.1s`. */
export function duration(ms: number): string {
  const seconds = Math.max(0, ms) / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes}m${(seconds - minutes * 60).toFixed(1).padStart(4, '0')}s`;
}
