import { App, Octokit, RequestError } from 'octokit';
import { PermanentError, RetryableError } from '../../core/errors.ts';
import type { GitHubRepo } from '../../core/model/types.ts';
import { silentLogger, type Logger } from '../../ports/log.ts';

/** A personal (or fine-grained) access token, or a GitHub App's key; without `installationId` it is found per repo. */
export type GitHubCredentials = { token: string } | { appId: number | string; privateKey: string; installationId?: number };

export interface GitHubClientOptions {
  credentials: GitHubCredentials;
  /** The API root: https://api.github.com by default, https://HOST/api/v3 on GitHub Enterprise Server. */
  baseUrl?: string;
  logger?: Logger;
}

/** Octokit instances with hermetic's error rules, handed out per repo or organisation. */
export interface GitHubClient {
  /** 'app' reports builds as check runs, 'token' as commit statuses (only Apps may write check runs). */
  readonly auth: 'token' | 'app';
  /** The Octokit for calls about `repo`; under an App, as its installation there. Throws PermanentError when it is not installed. */
  forRepo(repo: GitHubRepo): Promise<Octokit>;
  /** The Octokit for calls about organisation `org`; under an App, as its installation there. Throws PermanentError when it is not installed. */
  forOrg(org: string): Promise<Octokit>;
}

/** Share of the rate limit below which each new reset window gets one warning. */
const LOW_RATE_LIMIT_SHARE = 0.1;
/** GitHub asks for at least a minute's wait after a secondary rate limit that names no `retry-after`. */
const SECONDARY_LIMIT_FALLBACK_MS = 60_000;

/**
 * Octokit clients for a token or a GitHub App. Requests fail fast instead of sleeping: a spent or secondary rate
 * limit becomes a RetryableError with `retryAfterMs` until GitHub lets us in again, a 5xx or network failure a
 * RetryableError; other failures stay octokit's RequestError for the caller to read (404, 422, 304).
 */
export function createGitHubClient(options: GitHubClientOptions): GitHubClient {
  const logger = options.logger ?? silentLogger;
  const warned = new Set<string>();
  const ConfiguredOctokit = Octokit.plugin((octokit) => {
    octokit.hook.after('request', (response) => warnWhenLow(response.headers, logger, warned));
    octokit.hook.error('request', (error) => {
      throw failure(error, logger, warned);
    });
  }).defaults({
    userAgent: 'hermetic',
    ...(options.baseUrl === undefined ? {} : { baseUrl: options.baseUrl }),
    // Both plugins would sleep inside the request (until the reset, up to an hour, or for backoff), and the
    // throttler spaces all writes a second apart through module-wide queues. A function must not wait like that:
    // the platform redelivers with the retryAfterMs we give it.
    throttle: { enabled: false },
    retry: { enabled: false },
    log: {
      debug: () => undefined,
      info: () => undefined,
      warn: (message: string) => logger.warn('github.octokit_warning', { message }),
      error: (message: string) => logger.warn('github.octokit_error', { message }),
    },
  });

  const { credentials } = options;
  if ('token' in credentials) {
    const octokit = new ConfiguredOctokit({ auth: credentials.token });
    return { auth: 'token', forRepo: async () => octokit, forOrg: async () => octokit };
  }

  const app = new App({ appId: credentials.appId, privateKey: credentials.privateKey, Octokit: ConfiguredOctokit });
  const byInstallation = new Map<number, Promise<Octokit>>();
  const installationOf = new Map<string, Promise<number>>();
  const installation = (id: number): Promise<Octokit> => remember(byInstallation, id, async () => (await app.getInstallationOctokit(id)) as Octokit);
  const lookUp = (key: string, what: string, find: () => Promise<{ data: { id: number } }>): Promise<number> =>
    remember(installationOf, key, async () => {
      try {
        return (await find()).data.id;
      } catch (error) {
        if (error instanceof RequestError && error.status === 404) throw new PermanentError(`the GitHub App ${String(credentials.appId)} is not installed on ${what}`, { cause: error });
        throw error;
      }
    });
  const fixed = credentials.installationId;
  return {
    auth: 'app',
    async forRepo(repo) {
      if (fixed !== undefined) return installation(fixed);
      const key = `repo:${repo.owner}/${repo.name}`;
      return installation(await lookUp(key, `${repo.owner}/${repo.name}`, () => app.octokit.request('GET /repos/{owner}/{repo}/installation', { owner: repo.owner, repo: repo.name })));
    },
    async forOrg(org) {
      if (fixed !== undefined) return installation(fixed);
      return installation(await lookUp(`org:${org}`, `organisation ${org}`, () => app.octokit.request('GET /orgs/{org}/installation', { org })));
    },
  };
}

/** The value made once per key; a failed attempt is forgotten so the next call tries again. */
function remember<K, V>(cache: Map<K, Promise<V>>, key: K, make: () => Promise<V>): Promise<V> {
  const known = cache.get(key);
  if (known !== undefined) return known;
  const made = make();
  cache.set(key, made);
  made.catch(() => cache.delete(key));
  return made;
}

type Headers = Record<string, string | number | undefined>;

/** What a failed request becomes: rate limits and server or network failures are retryable, the rest stays as is. */
function failure(error: unknown, logger: Logger, warned: Set<string>): unknown {
  if (!(error instanceof RequestError)) return error;
  const headers: Headers = error.response?.headers ?? {};
  if (error.status !== 304) warnWhenLow(headers, logger, warned);
  // The path alone: the query may carry what a log should not, and a base keeps a relative URL from throwing.
  const where = `${error.request.method} ${new URL(error.request.url, 'http://github.invalid').pathname}`;
  if (error.status === 403 || error.status === 429) {
    const reset = Number(headers['x-ratelimit-reset']);
    if (String(headers['x-ratelimit-remaining']) === '0' && Number.isFinite(reset)) {
      const resetAt = new Date(reset * 1000).toISOString();
      // A second past the reset, as GitHub's clock and ours may differ by that.
      return new RetryableError(`GitHub rate limit (${String(headers['x-ratelimit-resource'] ?? 'core')}) spent until ${resetAt}: ${where}`, {
        cause: error,
        retryAfterMs: Math.max(0, reset * 1000 - Date.now()) + 1000,
      });
    }
    const retryAfter = Number(headers['retry-after']);
    if (headers['retry-after'] !== undefined || /secondary rate limit/i.test(error.message) || error.status === 429) {
      const retryAfterMs = Number.isFinite(retryAfter) ? retryAfter * 1000 : SECONDARY_LIMIT_FALLBACK_MS;
      return new RetryableError(`GitHub secondary rate limit: retry after ${retryAfterMs / 1000} s: ${where}`, { cause: error, retryAfterMs });
    }
  }
  if (error.status >= 500) return new RetryableError(`GitHub failed (${error.status}): ${where}: ${error.message}`, { cause: error });
  return error;
}

/** One warning per resource and reset window once fewer than a tenth of the requests are left. */
function warnWhenLow(headers: Headers, logger: Logger, warned: Set<string>): void {
  const limit = Number(headers['x-ratelimit-limit']);
  const remaining = Number(headers['x-ratelimit-remaining']);
  if (!(limit > 0) || !Number.isFinite(remaining) || remaining >= limit * LOW_RATE_LIMIT_SHARE) return;
  const resource = String(headers['x-ratelimit-resource'] ?? 'core');
  const reset = Number(headers['x-ratelimit-reset']);
  const window = `${resource}:${reset}`;
  if (warned.has(window)) return;
  warned.add(window);
  logger.warn('github.rate_limit_low', { resource, limit, remaining, resetAt: Number.isFinite(reset) ? new Date(reset * 1000).toISOString() : undefined });
}

/** The HTTP status of an octokit RequestError (304, 404, 422, ...), or undefined for anything else. */
export function requestStatus(error: unknown): number | undefined {
  return error instanceof RequestError ? error.status : undefined;
}
