import type { GitHubEnvironment } from '../../core/config/github-environment.ts';
import type { Repo } from '../../core/model/types.ts';
import type { EtagCache, GitHub } from '../../ports/github.ts';
import type { Logger } from '../../ports/log.ts';
import type { Reporter } from '../../ports/reporter.ts';
import type { Source } from '../../ports/source.ts';
import type { StateStore } from '../../ports/state.ts';
import { createGitHubReporter } from '../../core/trybots/github-reporter.ts';
import { routeSources } from '../source-router.ts';
import { createGitHubApi } from './github-api.ts';
import { createGitHubClient } from './client.ts';
import { createGitHubSource } from './github-source.ts';
import { createStateEtagCache } from './state-etag-cache.ts';

/**
 * GitHub's API and the GitHub source over one client, their ETags kept in the state store (without one, in memory,
 * for a command that runs once). Makes no request.
 */
export function connectGitHub(environment: GitHubEnvironment, deps: { state?: StateStore; logger: Logger }): { api: GitHub; source: Source } {
  const client = createGitHubClient({
    credentials: environment.auth,
    ...(environment.apiUrl === undefined ? {} : { baseUrl: environment.apiUrl }),
    logger: deps.logger,
  });
  const etags = deps.state === undefined ? memoryEtags() : createStateEtagCache(deps.state);
  return { api: createGitHubApi({ client, etags }), source: createGitHubSource({ client, etags, logger: deps.logger }) };
}

/** What a composition root hands the pipeline and its functions for GitHub. */
export interface GitHubWiring {
  /** Repos that live on GitHub through its API, every other repo through git. */
  source: Source;
  /** Commit statuses or check runs, per builder. */
  reporters: Reporter[];
  /** For trust and pull requests. */
  github?: GitHub;
  /** For the webhook's signatures. */
  webhookSecret?: string;
}

/** The pipeline's GitHub parts from the GitHub environment; without one, git alone and nothing reported to GitHub. */
export function wireGitHub(
  environment: GitHubEnvironment | undefined,
  deps: { git: Source; state: StateStore; logger: Logger; repos: readonly Repo[] },
): GitHubWiring {
  if (environment === undefined) return { source: deps.git, reporters: [] };
  const { api, source } = connectGitHub(environment, deps);
  return {
    source: routeSources(deps.git, source),
    reporters: [createGitHubReporter(api, deps.repos)],
    github: api,
    ...(environment.webhookSecret === undefined ? {} : { webhookSecret: environment.webhookSecret }),
  };
}

function memoryEtags(): EtagCache {
  const entries = new Map<string, { etag: string; value: unknown }>();
  return {
    get: async (key) => entries.get(key),
    set: async (key, entry) => void entries.set(key, entry),
  };
}
