import { matchesGlob } from 'node:path/posix';
import type { TryRequested } from '../model/messages.ts';
import { tryId, verdictDocId } from '../model/ids.ts';
import type { Builder, Repo, Step, TryMode } from '../model/types.ts';

/** A mode as one string, for IDs and verdicts: "full", "make", or "tests:a,b" with the names sorted. */
export function modeKey(mode: TryMode | undefined): string {
  if (mode === undefined || mode.kind === 'full') return 'full';
  return mode.kind === 'make' ? 'make' : `tests:${[...new Set(mode.tests)].sort().join(',')}`;
}

/** Whether a request needs the files its change touches to choose builders: it names none, and the repo has rules. */
export function needsTouchedFiles(repo: Repo, requested: readonly string[] | undefined): boolean {
  return requested === undefined && (repo.trybot?.paths.length ?? 0) > 0;
}

/**
 * The builders a trybot request gets: those it names, else the repo's trybot defaults plus every builder a path
 * rule adds for a touched file. Returns the names in a stable order, or the error naming unknown builders and the
 * ones that exist.
 */
export function chooseBuilders(
  repo: Repo,
  builders: ReadonlyMap<string, Builder>,
  requested: readonly string[] | undefined,
  touched: readonly string[],
): { builders: string[] } | { error: string } {
  if (requested !== undefined) {
    const unknown = requested.filter((name) => !builders.has(name));
    if (unknown.length > 0) {
      return { error: `unknown builder${unknown.length > 1 ? 's' : ''} ${unknown.map((name) => `"${name}"`).join(', ')}; expected one of: ${[...builders.keys()].sort().join(', ')}` };
    }
    return { builders: [...new Set(requested)] };
  }
  const chosen = new Set(repo.trybot?.builders ?? repo.builders);
  for (const rule of repo.trybot?.paths ?? []) {
    if (touched.some((file) => rule.match.some((pattern) => matchesGlob(file, pattern)))) for (const name of rule.builders) chosen.add(name);
  }
  return { builders: [...chosen] };
}

/** Why `builder` cannot run `mode`, or undefined when it can. */
export function modeProblem(builder: Builder, mode: TryMode): string | undefined {
  if (mode.kind === 'full' || builder.tests !== undefined) return undefined;
  if (!builder.steps.some((step) => step.test !== undefined)) {
    return `builder "${builder.name}" runs one command, with no test step apart from its make; it can only run in full`;
  }
  return undefined;
}

/**
 * What a whole build's worker runs in a mode: every step, all but the test steps, or the test steps on the named
 * tests. The test marker is the pipeline's own, so the worker's steps do not carry it.
 */
export function stepsForMode(steps: readonly Step[], mode: TryMode | undefined): Step[] {
  const chosen = mode?.kind === 'make' ? steps.filter((step) => step.test === undefined) : steps;
  return chosen.map(({ test, ...step }) => {
    if (test === undefined || mode?.kind !== 'tests') return step;
    const argv = [...step.argv.slice(0, test.fixedArgs), ...mode.tests];
    return { ...step, name: argv.join(' '), argv };
  });
}

/** The ID of a trybot request's record: one per repo, commit, mode and named builders, wherever it was sent from. */
export function tryIdOf(request: TryRequested): string {
  return tryId(request.repo, request.commit, modeKey(request.mode), request.builders);
}

/** The ID of a builder's verdict on a tree in a mode, as `report` records it and a trybot request looks it up. */
export function verdictIdOf(tree: string, name: string, builder: Builder, mode: TryMode | undefined): string {
  return verdictDocId(tree, name, modeKey(mode), verdictRecipe(builder));
}

/**
 * What decides a builder's verdict on a tree: where and how it builds and tests. A verdict is reused only while this
 * stays the same, so editing a builder's steps never reuses a verdict the old steps gave.
 */
function verdictRecipe(builder: Builder): unknown {
  const tests = builder.tests;
  return {
    hostType: builder.hostType,
    steps: builder.steps,
    env: builder.env,
    network: builder.network,
    tests: tests === undefined ? null : { kind: tests.kind, make: tests.make, list: tests.list, unitEnv: tests.unitEnv, retryFailed: tests.retryFailed },
  };
}
