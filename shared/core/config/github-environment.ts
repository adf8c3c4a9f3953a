import { ConfigError } from '../errors.ts';
import { isGitHubAppId } from '../model/refs.ts';

/** How this deployment reaches GitHub, from its environment. */
export interface GitHubEnvironment {
  auth: { token: string } | { appId: string; privateKey: string };
  /** GitHub Enterprise's API URL; undefined for github.com. */
  apiUrl?: string;
  /** What GitHub signs webhook deliveries with. */
  webhookSecret?: string;
}

/**
 * Reads GitHub access from the environment: `GITHUB_TOKEN`, or a GitHub App's `HERMETIC_GITHUB_APP_ID` with its
 * private key in `GITHUB_APP_PRIVATE_KEY` (PEM text); `HERMETIC_GITHUB_API_URL` for GitHub Enterprise;
 * `HERMETIC_WEBHOOK_SECRET` for the webhook. `HERMETIC_GITHUB_AUTH` (set by deploy) says which auth must be there.
 * Undefined when none is set; throws one ConfigError naming every variable that is missing or malformed.
 */
export function readGitHubEnvironment(env: Readonly<Record<string, string | undefined>>): GitHubEnvironment | undefined {
  const read = (name: string) => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const token = read('GITHUB_TOKEN');
  const appId = read('HERMETIC_GITHUB_APP_ID');
  const privateKey = read('GITHUB_APP_PRIVATE_KEY');
  const apiUrl = read('HERMETIC_GITHUB_API_URL');
  const webhookSecret = read('HERMETIC_WEBHOOK_SECRET');
  const wanted = read('HERMETIC_GITHUB_AUTH');
  if (token === undefined && appId === undefined && privateKey === undefined && wanted === undefined) {
    if (apiUrl !== undefined || webhookSecret !== undefined) {
      throw new ConfigError('HERMETIC_GITHUB_API_URL or HERMETIC_WEBHOOK_SECRET is set, but no GitHub credentials: set GITHUB_TOKEN, or HERMETIC_GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY');
    }
    return undefined;
  }
  const problems: string[] = [];
  const useApp = wanted === 'app' || (wanted === undefined && token === undefined);
  if (wanted !== undefined && wanted !== 'token' && wanted !== 'app') problems.push(`HERMETIC_GITHUB_AUTH=${JSON.stringify(wanted)} is not "token" or "app"`);
  if (!useApp && token === undefined) problems.push('GITHUB_TOKEN is not set (a GitHub token with access to the repos)');
  if (useApp) {
    if (appId === undefined) problems.push('HERMETIC_GITHUB_APP_ID is not set (the GitHub App\'s numeric ID)');
    else if (!isGitHubAppId(appId)) problems.push(`HERMETIC_GITHUB_APP_ID=${JSON.stringify(appId)} is not a numeric App ID`);
    if (privateKey === undefined) problems.push('GITHUB_APP_PRIVATE_KEY is not set (the GitHub App\'s private key, PEM)');
    else if (!privateKey.includes('PRIVATE KEY-----')) problems.push('GITHUB_APP_PRIVATE_KEY is not a PEM private key');
  }
  if (apiUrl !== undefined && !/^https?:\/\/[^\s/]+(\/\S*)?$/.test(apiUrl)) problems.push(`HERMETIC_GITHUB_API_URL=${JSON.stringify(apiUrl)} is not a URL`);
  if (problems.length > 0) throw new ConfigError(`GitHub access: ${problems.join('; ')}`);
  return {
    auth: useApp ? { appId: appId ?? '', privateKey: privateKey ?? '' } : { token: token ?? '' },
    ...(apiUrl === undefined ? {} : { apiUrl: apiUrl.replace(/\/+$/, '') }),
    ...(webhookSecret === undefined ? {} : { webhookSecret }),
  };
}
