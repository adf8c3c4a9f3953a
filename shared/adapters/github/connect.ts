import type { GitHubEnvironment } from '../../config/github-environment.ts';
import type { EtagCache, GitHub } from '../../ports/github.ts';
import type { Logger } from '../../ports/log.ts';
import type { Source } from '../../ports/source.ts';
import type { StateStore } from '../../ports/state.ts';
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

function memoryEtags(): EtagCache {
  const entries = new Map<string, { etag: string; value: unknown }>();
  return {
    get: async (key) => entries.get(key),
    set: async (key, entry) => void entries.set(key, entry),
  };
}
