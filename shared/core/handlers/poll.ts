import { describeError } from '../errors.ts';
import { branchDocId, buildId, commitDocId } from '../model/ids.ts';
import type { PollTick } from '../model/messages.ts';
import { topics } from '../model/messages.ts';
import type { Build, Commit, Repo } from '../model/types.ts';
import { collections } from '../../ports/state.ts';
import type { PipelineDeps } from '../pipeline/deps.ts';
import { publishMessage } from '../pipeline/publish.ts';

/**
 * How many of a branch's new commits a poll records at once: their transactions and publishes overlap (many round
 * trips in one wait on Google Cloud, one group commit on one machine), while the head still moves only after all.
 */
const commitsAtOnce = 16;

export interface PollSummary {
  /** Builds requested by this poll, new or re-requested. */
  requested: Array<{ buildId: string; repo: string; commit: string; builder: string }>;
  /** Branches that could not be polled, with the reason. */
  errors: Array<{ repo: string; branch: string; error: string }>;
}

/**
 * The `poll` function: finds new commits on every watched branch and requests a build of each on each of the repo's
 * builders. A branch's head advances only after its builds are requested, so a crash anywhere means the next poll
 * requests them again, and the deterministic build IDs make that a no-op downstream. A branch that cannot be polled
 * is logged and recorded, and does not stop the others.
 */
export function createPoll(deps: Pick<PipelineDeps, 'catalog' | 'state' | 'publisher' | 'source' | 'logger' | 'now' | 'options'>) {
  return async function poll(tick: PollTick): Promise<PollSummary> {
    const summary: PollSummary = { requested: [], errors: [] };
    const repos = deps.catalog.repos.filter((repo) => tick.repos === undefined || tick.repos.includes(repo.name));
    for (const repo of repos) {
      for (const branch of repo.branches) {
        try {
          summary.requested.push(...(await pollBranch(repo, branch)));
        } catch (error) {
          const reason = describeError(error);
          summary.errors.push({ repo: repo.name, branch, error: reason });
          deps.logger.error('poll.failed', { repo: repo.name, branch, error: reason });
          await recordBranch(repo, branch, { error: reason });
        }
      }
    }
    return summary;
  };

  async function pollBranch(repo: Repo, branch: string): Promise<PollSummary['requested']> {
    const previous = await deps.state.get(collections.branches, branchDocId(repo.name, branch));
    const limit = previous?.head === undefined ? repo.backfill : deps.options.maxCommitsPerPoll;
    const changes = await deps.source.changes(repo, branch, previous?.head, limit);
    if (changes.forced) {
      deps.logger.warn('poll.history-rewritten', { repo: repo.name, branch, from: previous?.head, to: changes.head });
    }
    if (changes.skipped > 0) {
      deps.logger.warn('poll.skipped', { repo: repo.name, branch, skipped: changes.skipped, kept: changes.commits.length });
    }
    const base = deps.now() * 1000;
    const requested: PollSummary['requested'] = [];
    for (let start = 0; start < changes.commits.length; start += commitsAtOnce) {
      const window = changes.commits.slice(start, start + commitsAtOnce);
      const settled = await Promise.allSettled(
        window.map((info, offset) => requestBuilds(repo, { repo: repo.name, ...info, branch, seq: base + start + offset })),
      );
      for (const outcome of settled) {
        if (outcome.status === 'rejected') throw outcome.reason;
        requested.push(...outcome.value);
      }
    }
    if (changes.commits.length > 0) {
      deps.logger.info('poll.found', { repo: repo.name, branch, commits: changes.commits.length, head: changes.head });
    }
    await recordBranch(repo, branch, { head: changes.head });
    return requested;
  }

  /** Stores the commit and its builds if new, and requests the builds still waiting to be planned. */
  async function requestBuilds(repo: Repo, commit: Commit): Promise<PollSummary['requested']> {
    const queued = await recordCommit(repo, commit);
    const requested = queued.map((build) => ({ buildId: build.id, repo: build.repo, commit: build.commit, builder: build.builder }));
    await Promise.all(requested.map((request) => publishMessage(deps.publisher, topics.buildRequested, { v: 1, ...request })));
    return requested;
  }

  /** Stores the commit and its builds if new; returns the builds still waiting to be planned. */
  async function recordCommit(repo: Repo, commit: Commit): Promise<Build[]> {
    return deps.state.transaction(async (tx) => {
      const commitId = commitDocId(repo.name, commit.hash);
      const known = await tx.get(collections.commits, commitId);
      const builds = await Promise.all(
        repo.builders.map(async (builder) => {
          const id = buildId(repo.name, commit.hash, builder);
          return { id, builder, existing: await tx.get(collections.builds, id) };
        }),
      );
      const seq = known?.seq ?? commit.seq;
      if (known === undefined) tx.set(collections.commits, commitId, commit);
      const queued: Build[] = [];
      for (const { id, builder, existing } of builds) {
        if (existing !== undefined) {
          if (existing.status === 'queued' && existing.taskId === undefined) queued.push(existing);
          continue;
        }
        const build: Build = {
          id,
          repo: repo.name,
          commit: commit.hash,
          builder,
          seq,
          ...(commit.tree === undefined ? {} : { tree: commit.tree }),
          status: 'queued',
          createdAt: deps.now(),
          attempts: 0,
        };
        tx.set(collections.builds, id, build);
        queued.push(build);
      }
      return queued;
    });
  }

  async function recordBranch(repo: Repo, branch: string, outcome: { head: string } | { error: string }): Promise<void> {
    const id = branchDocId(repo.name, branch);
    await deps.state.transaction(async (tx) => {
      const previous = await tx.get(collections.branches, id);
      const head = 'head' in outcome ? outcome.head : previous?.head;
      tx.set(collections.branches, id, {
        repo: repo.name,
        branch,
        ...(head === undefined ? {} : { head }),
        polledAt: deps.now(),
        ...('error' in outcome ? { error: outcome.error } : {}),
      });
    });
  }
}
