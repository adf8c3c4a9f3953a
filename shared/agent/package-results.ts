// Splitting one `go test` of several packages (what `dist test` runs for several std package units at once) into
// one outcome per unit. `go test` prints each package's output whole, then its result line, in the order the packages
// were given, whatever order they ran in: the result line of the next package still to close ends that unit's share.
// Built-ins only: the agent is copied into images alone.
import type { TaskResult } from '../core/model/wire.ts';

type StepOutcome = TaskResult['steps'][number];

/** A unit of a batched step: its name, and the package whose `go test` result line ends its output. */
export interface PackageUnit {
  name: string;
  package: string;
}

/** Where and when a unit's result line was seen: its verdict, the log offset just past the line, and the time. */
export interface PackageClose {
  verdict: 'ok' | 'FAIL' | '?';
  end: number;
  at: number;
}

// `ok  \tpkg\t0.1s`, `FAIL\tpkg\t0.1s`, `FAIL\tpkg [build failed]`, `?   \tpkg\t[no test files]`.
const resultLine = /^(ok|FAIL|\?)[ \t]+(\S+)(?:[ \t]|$)/;

/** A line longer than this cannot be a result line; it is not kept whole while it streams. */
const maxLineBytes = 64 * 1024;

/**
 * Watches a batched step's stdout for its units' result lines, expected in the units' order. `push` takes each piece
 * of stdout as it is written to the log at `offset`, and returns the units it closed. Never throws.
 */
export function createPackageSplitter(units: readonly PackageUnit[], now: () => number) {
  let next = 0;
  let partial: Buffer[] = [];
  let partialBytes = 0;
  return {
    push(data: Buffer, offset: number): PackageClose[] {
      const closes: PackageClose[] = [];
      let from = 0;
      for (let newline = data.indexOf(10); newline !== -1; newline = data.indexOf(10, from)) {
        const line = partialBytes > maxLineBytes ? '' : Buffer.concat([...partial, data.subarray(from, newline)]).toString('utf8');
        partial = [];
        partialBytes = 0;
        from = newline + 1;
        const match = resultLine.exec(line.replace(/\r$/, ''));
        const unit = units[next];
        if (match === null || unit === undefined || match[2] !== unit.package) continue;
        closes.push({ verdict: match[1] as PackageClose['verdict'], end: offset + from, at: now() });
        next += 1;
      }
      if (from < data.length && partialBytes <= maxLineBytes) {
        partial.push(data.subarray(from));
        partialBytes += data.length - from;
      }
      return closes;
    },
  };
}

/** How the batched step's process ended, and where its output is in the log. */
export interface BatchEnd {
  exitCode: number | null;
  signal: string | null;
  /** The agent stopped it at the task's deadline. */
  timedOut: boolean;
  startedAt: number;
  endedAt: number;
  /** The step's output in the log, `[start, end)`. */
  log: { start: number; end: number };
}

/**
 * One outcome per unit of a batched step, in the units' order. A unit whose result line was seen gets its verdict
 * (exit code 0 for ok or no test files, 1 for FAIL), the output since the
 * previous unit's result line, and the time between the two. When the process failed but no unit did, the failure
 * cannot be pinned on one, and every unit gets the process's exit code. Units with no result line: when the step
 * was stopped at the deadline, the first is the one stopped (it gets the rest of the output) and the others never
 * ran, so they get no outcome; otherwise each failed, with the process's exit code (1 when it exited 0).
 */
export function packageOutcomes(units: readonly PackageUnit[], closes: readonly PackageClose[], end: BatchEnd): StepOutcome[] {
  const allClosed = closes.length >= units.length;
  const unpinned = allClosed && !end.timedOut && end.exitCode !== 0 && closes.every((close) => close.verdict !== 'FAIL');
  const processCode = end.exitCode !== null && end.exitCode !== 0 ? end.exitCode : end.signal === null ? 1 : null;
  const outcomes: StepOutcome[] = [];
  let start = end.log.start;
  let since = end.startedAt;
  for (const [index, unit] of units.entries()) {
    const close = closes[index];
    if (close !== undefined) {
      // The last unit's share runs to the end of the output: dist's closing lines.
      const stop = index === units.length - 1 ? end.log.end : close.end;
      const exitCode = unpinned ? end.exitCode : close.verdict === 'FAIL' ? 1 : 0;
      outcomes.push({ name: unit.name, exitCode, durationMs: Math.max(0, Math.round(close.at - since)), log: { start, end: stop } });
      start = stop;
      since = close.at;
      continue;
    }
    const first = index === closes.length;
    const outcome: StepOutcome = {
      name: unit.name,
      exitCode: end.timedOut ? end.exitCode : processCode,
      durationMs: first ? Math.max(0, Math.round(end.endedAt - since)) : 0,
      log: { start: first ? start : end.log.end, end: end.log.end },
    };
    if (end.signal !== null && (first || !end.timedOut)) outcome.signal = end.signal;
    outcomes.push(outcome);
    if (end.timedOut) break;
  }
  return outcomes;
}
