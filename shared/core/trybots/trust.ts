import { trustDocId } from '../model/ids.ts';
import type { TrustRecord, TrybotPolicy } from '../model/types.ts';
import type { GitHub } from '../../ports/github.ts';
import type { Logger } from '../../ports/log.ts';
import { collections, type StateStore } from '../../ports/state.ts';

export interface TrustDecision {
  trusted: boolean;
  /** What made them trusted: "allowlist", "org:golang", "team:golang/release"; or why not. */
  why: string;
}

export interface TrustDeps {
  policy: TrybotPolicy | undefined;
  state: StateStore;
  github: GitHub | undefined;
  logger: Logger;
  now: () => number;
}

/**
 * Decides whether a GitHub login may start trybots: on the allowlist, or a member of a configured organisation or
 * team. What GitHub said is kept for the policy's cache time, so a burst of requests asks GitHub once. Logins are
 * compared as GitHub compares them (ASCII, case-insensitive); callers validate them first. A GitHub failure
 * propagates (the request is retried), and is never taken as trust.
 */
export function createTrust(deps: TrustDeps) {
  return async function decide(login: string): Promise<TrustDecision> {
    const policy = deps.policy;
    const who = login.toLowerCase();
    if (policy === undefined) return { trusted: false, why: 'no trybot policy is configured' };
    if (policy.users.includes(who)) return { trusted: true, why: 'allowlist' };
    if (policy.orgs.length === 0 && policy.teams.length === 0) return { trusted: false, why: 'not on the allowlist' };
    if (deps.github === undefined) {
      deps.logger.warn('trust.no-github', { login: who, orgs: policy.orgs.length, teams: policy.teams.length });
      return { trusted: false, why: 'not on the allowlist, and organisation membership cannot be checked without GitHub credentials' };
    }
    const cached = await deps.state.get(collections.trust, trustDocId(who));
    if (cached !== undefined && deps.now() - cached.checkedAt < policy.trustCacheSeconds * 1000) return decisionOf(cached);
    const record = await askGitHub(deps.github, policy, who, deps.now());
    await deps.state.transaction(async (tx) => {
      tx.set(collections.trust, trustDocId(who), record);
    });
    deps.logger.info('trust.checked', { login: who, trusted: record.trusted, ...(record.via === undefined ? {} : { via: record.via }) });
    return decisionOf(record);
  };
}

async function askGitHub(github: GitHub, policy: TrybotPolicy, login: string, now: number): Promise<TrustRecord> {
  for (const org of policy.orgs) {
    if (await github.isOrgMember(org, login)) return { login, trusted: true, via: `org:${org}`, checkedAt: now };
  }
  for (const { org, team } of policy.teams) {
    if (await github.isTeamMember(org, team, login)) return { login, trusted: true, via: `team:${org}/${team}`, checkedAt: now };
  }
  return { login, trusted: false, checkedAt: now };
}

function decisionOf(record: TrustRecord): TrustDecision {
  return record.trusted ? { trusted: true, why: record.via ?? 'membership' } : { trusted: false, why: 'not on the allowlist nor in a trusted organisation or team' };
}
