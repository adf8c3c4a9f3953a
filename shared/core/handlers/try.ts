import { describeError, PermanentError } from '../errors.ts';
import { branchDocId, tryBuildId, waitingDocId } from '../model/ids.ts';
import { buildLinks } from '../model/links.ts';
import { topics, type TryRequested } from '../model/messages.ts';
import type { Build, Repo, TryMode, TryRun } from '../model/types.ts';
import type { CommitInfo } from '../../ports/source.ts';
import { collections, type Transaction } from '../../ports/state.ts';
import { chooseBuilders, modeKey, modeProblem, needsTouchedFiles, tryIdOf, verdictIdOf } from '../trybots/try-modes.ts';
import { createTrust } from '../trybots/trust.ts';
import type { PipelineDeps } from '../pipeline/deps.ts';
import { publishMessage } from '../pipeline/publish.ts';
import { announceMoves } from '../pipeline/announce-moves.ts';

type TryDeps = Pick<PipelineDeps, 'catalog' | 'state' | 'publisher' | 'source' | 'github' | 'reporters' | 'logger' | 'now' | 'options'>;

/**
 * The `trybot` function: one trybot request. A trusted requester's request is built at once on its builders, each
 * either reusing the verdict an earlier build gave the same tree or as a new trybot build; their requests also
 * approve every request waiting for this exact commit. An untrusted requester's request is recorded as waiting
 * (up to the policy's limit per person; beyond it, dropped) and nothing of it is fetched or run. A repeated request
 * changes nothing. Throws PermanentError for an unwatched repo, unknown builders or a mode a builder cannot run,
 * after telling a trusted requester on the pull request.
 */
export function createTry(deps: TryDeps) {
  const trust = createTrust({ policy: deps.catalog.trybots, state: deps.state, github: deps.github, logger: deps.logger, now: deps.now });

  return async function trybot(request: TryRequested): Promise<void> {
    const repo = deps.catalog.repos.find((candidate) => candidate.name === request.repo);
    if (repo === undefined) {
      throw new PermanentError(`repo "${request.repo}" is not watched; expected one of: ${deps.catalog.repos.map((r) => r.name).join(', ')}`);
    }
    const mode: TryMode = request.mode ?? { kind: 'full' };
    const id = tryIdOf(request);
    const requester = request.requester.toLowerCase();
    const decision = await trust(requester);
    const named = request.builders === undefined ? undefined : chooseBuilders(repo, deps.catalog.builders, request.builders, []);
    if (named !== undefined && 'error' in named) return refuse(repo, request, decision.trusted, named.error);

    if (!decision.trusted) return wait(repo, request, id, mode, requester, decision.why);
    await accept(repo, request, id, mode, requester);
    const approved: string[] = [];
    const waiting = await deps.state.query(collections.trybots, { where: { repo: repo.name, commit: request.commit, status: 'waiting-approval' } });
    for (const other of waiting) {
      if (other.id === id) continue;
      try {
        await accept(repo, requestOf(other), other.id, other.mode, requester);
        approved.push(other.id);
      } catch (error) {
        if (!(error instanceof PermanentError)) throw error;
        await reject(other, describeError(error));
      }
    }
    if (approved.length > 0) deps.logger.info('try.approved', { repo: repo.name, commit: request.commit, by: requester, tries: approved.length });
  };

  /** Ends a waiting request that its approval cannot start (its builders or mode no longer fit), with the reason. */
  async function reject(run: TryRun, reason: string): Promise<void> {
    await deps.state.transaction(async (tx) => {
      const current = await tx.get(collections.trybots, run.id);
      const waiting = await tx.get(collections.waiting, waitingDocId(run.requestedBy));
      if (current?.status !== 'waiting-approval') return;
      tx.set(collections.trybots, run.id, { ...current, status: 'rejected', reason, updatedAt: deps.now() });
      stopWaiting(tx, waiting, run.id);
    });
    deps.logger.warn('try.rejected', { repo: run.repo, commit: run.commit, try: run.id, reason });
  }

  /** Tells a trusted requester why, on their pull request, and throws so the request is dead-lettered with it. */
  async function refuse(repo: Repo, request: TryRequested, trusted: boolean, reason: string): Promise<never> {
    if (trusted) await tell(repo, request, `Cannot start trybots for ${request.commit.slice(0, 12)}: ${reason}.`);
    throw new PermanentError(`try ${repo.name}@${request.commit}: ${reason}`);
  }

  async function tell(repo: Repo, request: Pick<TryRequested, 'pullRequest'>, body: string): Promise<void> {
    if (deps.github === undefined || repo.github === undefined || request.pullRequest === undefined) return;
    try {
      await deps.github.comment(repo.github, request.pullRequest, body);
    } catch (error) {
      // The request's fate is recorded either way; a comment that did not land is not worth a redelivery.
      deps.logger.warn('try.comment-failed', { repo: repo.name, pullRequest: request.pullRequest, error: describeError(error) });
    }
  }

  /** Records an untrusted request as waiting, within the per-person limit; nothing of the change is touched. */
  async function wait(repo: Repo, request: TryRequested, id: string, mode: TryMode, requester: string, why: string): Promise<void> {
    const limit = deps.catalog.trybots?.maxWaitingPerRequester ?? 0;
    const result = await deps.state.transaction(async (tx) => {
      const existing = await tx.get(collections.trybots, id);
      const waiting = (await tx.get(collections.waiting, waitingDocId(requester))) ?? { login: requester, tryIds: [] };
      const now = deps.now();
      if (existing !== undefined) {
        if (!existing.requesters.includes(requester) && existing.requesters.length < maxRequesters) {
          tx.set(collections.trybots, id, { ...existing, requesters: [...existing.requesters, requester], updatedAt: now });
        }
        return { dropped: false, created: false };
      }
      if (waiting.tryIds.length >= limit) return { dropped: true, created: false };
      const run: TryRun = {
        ...tryFields(repo, request, id, mode, requester, now),
        status: 'waiting-approval',
        reason: `waiting for a trusted person to approve this commit: ${requester} is ${why}`,
      };
      tx.set(collections.trybots, id, run);
      tx.set(collections.waiting, waitingDocId(requester), { login: requester, tryIds: [...waiting.tryIds, id] });
      return { dropped: false, created: true };
    });
    const fields = { repo: repo.name, commit: request.commit, requester, try: id };
    if (result.dropped) {
      deps.logger.warn('try.dropped', { ...fields, reason: `${requester} already has ${limit} request(s) waiting for approval` });
      return;
    }
    if (result.created) {
      deps.logger.info('try.waiting', { ...fields, why });
      await tell(repo, request, `Trybots for ${request.commit.slice(0, 12)} are waiting for approval: a trusted person can approve this commit by commenting \`/try\`.`);
    }
  }

  /**
   * Accepts a request for `approver` (its own requester, or the trusted person approving it): chooses its builders,
   * reuses verdicts the same tree already has, and makes and requests the rest as trybot builds.
   */
  async function accept(repo: Repo, request: TryRequested, id: string, mode: TryMode, approver: string): Promise<void> {
    const stored = await deps.state.get(collections.trybots, id);
    if (stored?.status === 'accepted') {
      // A redelivery: whatever a crash after the acceptance left unsent is sent again; both are idempotent.
      await requestBuilds(stored);
      await reportReused(repo, stored);
      return;
    }
    const ref = request.ref ?? (request.pullRequest === undefined ? undefined : `refs/pull/${request.pullRequest}/head`);
    let commit: CommitInfo;
    try {
      commit = await deps.source.fetchCommit(repo, request.commit, ref);
    } catch (error) {
      if (!(error instanceof PermanentError)) throw error;
      return refuse(repo, request, true, describeError(error));
    }
    const chosen = chooseBuilders(repo, deps.catalog.builders, request.builders, await touchedFiles(repo, request));
    if ('error' in chosen) return refuse(repo, request, true, chosen.error);
    for (const name of chosen.builders) {
      const problem = modeProblem(deps.catalog.builders.get(name)!, mode);
      if (problem !== undefined) return refuse(repo, request, true, problem);
    }
    const verdicts = await Promise.all(
      chosen.builders.map((builder) => deps.state.get(collections.verdicts, verdictIdOf(commit.tree, builder, deps.catalog.builders.get(builder)!, mode))),
    );
    const accepted = await deps.state.transaction(async (tx) => {
      const existing = await tx.get(collections.trybots, id);
      if (existing?.status === 'accepted') return { run: existing, created: [] as Build[] };
      const now = deps.now();
      const builds: TryRun['builds'] = [];
      const created: Build[] = [];
      const entries = await Promise.all(
        chosen.builders.map(async (builder, index) => {
          const reused = verdicts[index];
          if (reused !== undefined) return { builder, buildId: reused.buildId, reused: true, stored: undefined };
          const buildId = tryBuildId(repo.name, commit.hash, builder, modeKey(mode));
          return { builder, buildId, reused: false, stored: await tx.get(collections.builds, buildId) };
        }),
      );
      const waiting = existing?.status === 'waiting-approval' ? await tx.get(collections.waiting, waitingDocId(existing.requestedBy)) : undefined;
      for (const entry of entries) {
        builds.push({ builder: entry.builder, buildId: entry.buildId, reused: entry.reused });
        if (entry.reused || entry.stored !== undefined) continue;
        const build: Build = {
          id: entry.buildId,
          repo: repo.name,
          commit: commit.hash,
          builder: entry.builder,
          seq: now * 1000,
          tree: commit.tree,
          trybot: true,
          ...(mode.kind === 'full' ? {} : { mode }),
          status: 'queued',
          createdAt: now,
          attempts: 0,
        };
        tx.set(collections.builds, build.id, build);
        created.push(build);
      }
      const base = existing ?? tryFields(repo, request, id, mode, approver, now);
      const { reason: _waitingReason, ...rest } = base;
      const run: TryRun = { ...rest, tree: commit.tree, status: 'accepted', acceptedBy: approver, builds, updatedAt: now };
      tx.set(collections.trybots, id, run);
      stopWaiting(tx, waiting, id);
      return { run, created };
    });
    const { run } = accepted;
    deps.logger.info('try.accepted', {
      repo: repo.name,
      commit: request.commit,
      try: id,
      by: approver,
      builders: run.builds.map((entry) => entry.builder).join(','),
      reused: run.builds.filter((entry) => entry.reused).length,
    });
    await announceMoves(deps, accepted.created.map((build) => build.id));
    await requestBuilds(run);
    await reportReused(repo, run);
  }

  /** Publishes `build-requested` for each of the try's own builds still waiting to be planned (again, on a redelivery). */
  async function requestBuilds(run: TryRun): Promise<void> {
    for (const entry of run.builds) {
      if (entry.reused) continue;
      const build = await deps.state.get(collections.builds, entry.buildId);
      if (build === undefined || build.status !== 'queued' || build.taskId !== undefined || build.sharding !== undefined) continue;
      await publishMessage(deps.publisher, topics.buildRequested, { v: 1, buildId: build.id, repo: build.repo, commit: build.commit, builder: build.builder });
    }
  }

  /** Hands each reused verdict to the reporters as this commit's, saying whose it is. */
  async function reportReused(repo: Repo, run: TryRun): Promise<void> {
    for (const entry of run.builds) {
      if (!entry.reused) continue;
      const earlier = await deps.state.get(collections.builds, entry.buildId);
      if (earlier === undefined) continue;
      const reason = `reused: the same tree already has this verdict (build ${earlier.id.slice(0, 8)} of ${earlier.commit.slice(0, 12)})`;
      const view: Build = { ...earlier, repo: repo.name, commit: run.commit, reason };
      for (const reporter of deps.reporters) await reporter.report(view, buildLinks(earlier, deps.options.dashboardUrl));
    }
  }

  /** The files the change touches, against its base (the request's, else the repo's first branch head as last polled). */
  async function touchedFiles(repo: Repo, request: TryRequested): Promise<string[]> {
    if (!needsTouchedFiles(repo, request.builders)) return [];
    const base = request.base ?? (await deps.state.get(collections.branches, branchDocId(repo.name, repo.branches[0] ?? 'main')))?.head;
    if (base === undefined) {
      deps.logger.warn('try.no-base', { repo: repo.name, commit: request.commit, reason: 'no base commit known; path rules add no builders' });
      return [];
    }
    return deps.source.changedFiles(repo, base, request.commit);
  }
}

/** Takes a request off its requester's waiting list, which the flood limit counts. */
function stopWaiting(tx: Transaction, waiting: { login: string; tryIds: string[] } | undefined, id: string): void {
  if (waiting !== undefined) tx.set(collections.waiting, waitingDocId(waiting.login), { ...waiting, tryIds: waiting.tryIds.filter((other) => other !== id) });
}

/** People listed on one request at most; more are still counted as asking, but not recorded. */
const maxRequesters = 20;

function tryFields(repo: Repo, request: TryRequested, id: string, mode: TryMode, requester: string, now: number): Omit<TryRun, 'status'> {
  return {
    id,
    repo: repo.name,
    commit: request.commit,
    ...(request.pullRequest === undefined ? {} : { pullRequest: request.pullRequest }),
    ...(request.ref === undefined ? {} : { ref: request.ref }),
    mode,
    ...(request.builders === undefined ? {} : { requestedBuilders: [...request.builders] }),
    requestedBy: requester,
    requesters: [requester],
    builds: [],
    createdAt: now,
    updatedAt: now,
  };
}

/** A stored request, as the request that made it, for approving it. */
function requestOf(run: TryRun): TryRequested {
  return {
    v: 1,
    repo: run.repo,
    commit: run.commit,
    requester: run.requestedBy,
    mode: run.mode,
    ...(run.pullRequest === undefined ? {} : { pullRequest: run.pullRequest }),
    ...(run.ref === undefined ? {} : { ref: run.ref }),
    ...(run.requestedBuilders === undefined ? {} : { builders: run.requestedBuilders }),
  };
}
