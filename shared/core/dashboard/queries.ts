import { commitDocId } from '../model/ids.ts';
import type { BranchState, Build, Commit, Task, TryRun } from '../model/types.ts';
import { collections, type StateStore } from '../../ports/state.ts';

/** One row of the grid: a commit and its builds by builder name. */
export interface GridRow {
  commit: Commit;
  builds: Record<string, Build>;
}

export interface Grid {
  repo: string;
  builders: string[];
  rows: GridRow[];
}

/** The newest `limit` commits of a repo, each with its post-submit builds (trybot builds of the same commits left out). */
export async function gridOf(state: StateStore, repo: string, builders: readonly string[], limit: number): Promise<Grid> {
  const commits = await state.query(collections.commits, {
    where: { repo },
    orderBy: { field: 'seq', direction: 'desc' },
    limit,
  });
  const builds: Build[] = [];
  // Firestore allows at most 30 values in an `in` filter.
  for (let start = 0; start < commits.length; start += 30) {
    const hashes = commits.slice(start, start + 30).map((commit) => commit.hash);
    const found = await state.query(collections.builds, { where: { repo, commit: { in: hashes } } });
    // A trybot build of a commit that also landed is a change's verdict, not the branch's: it must not take the cell.
    builds.push(...found.filter((build) => build.trybot !== true));
  }
  const names = new Set(builders);
  for (const build of builds) names.add(build.builder);
  const rows = commits.map((commit) => ({
    commit,
    builds: Object.fromEntries(
      builds.filter((build) => build.commit === commit.hash).map((build) => [build.builder, build]),
    ),
  }));
  return { repo, builders: [...names].sort(), rows };
}

/** A build with every attempt of its task, oldest first. */
export async function buildDetail(
  state: StateStore,
  id: string,
): Promise<{ build: Build; tasks: Task[]; commit: Commit | undefined } | undefined> {
  const build = await state.get(collections.builds, id);
  if (build === undefined) return undefined;
  const tasks = await state.query(collections.tasks, { where: { buildId: id } });
  tasks.sort((a, b) => a.attempt - b.attempt);
  const commit = await state.get(collections.commits, commitDocId(build.repo, build.commit));
  return { build, tasks, commit };
}

/** The poll state of every watched branch of a repo. */
export function branchesOf(state: StateStore, repo: string): Promise<BranchState[]> {
  return state.query(collections.branches, { where: { repo } });
}

/** A trybot request with each of its builds as stored: its own, or for a reused verdict the earlier build that gave it. */
export interface TryDetail {
  run: TryRun;
  builds: Array<TryRun['builds'][number] & { build: Build | undefined }>;
}

/** The newest `limit` trybot requests, of one repo or of every repo, each with its builds. */
export async function trybotsOf(state: StateStore, repo: string | undefined, limit: number): Promise<TryDetail[]> {
  const runs = await state.query(collections.trybots, {
    ...(repo === undefined ? {} : { where: { repo } }),
    orderBy: { field: 'createdAt', direction: 'desc' },
    limit,
  });
  return Promise.all(runs.map((run) => withBuilds(state, run)));
}

/** One trybot request with its builds; undefined when there is none. */
export async function tryDetail(state: StateStore, id: string): Promise<TryDetail | undefined> {
  const run = await state.get(collections.trybots, id);
  return run === undefined ? undefined : withBuilds(state, run);
}

async function withBuilds(state: StateStore, run: TryRun): Promise<TryDetail> {
  const builds = await Promise.all(run.builds.map(async (entry) => ({ ...entry, build: await state.get(collections.builds, entry.buildId) })));
  return { run, builds };
}
