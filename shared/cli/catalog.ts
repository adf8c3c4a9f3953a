import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, repoNameFromUrl, type Config } from '../core/config/config.ts';
import { isSafeBranchName } from '../core/model/refs.ts';
import { ConfigError } from '../core/errors.ts';
import type { Repo } from '../core/model/types.ts';
import { pathExists } from '../path-exists.ts';

/** The project's own folder, where the shipped config and the example recipe live. */
export const projectDir = fileURLToPath(new URL('../../', import.meta.url));
export const shippedConfigFile = join(projectDir, 'hermetic.config.json');
export const exampleRecipeDir = join(projectDir, 'infra', 'example');

export interface CatalogRequest {
  config?: string;
  repos: string[];
  builders: string[];
  branches: string[];
  cwd: string;
  /** Where the example repository lives when nothing else is watched. */
  exampleDir: string;
}

/** What `up` watches and with which builders, and whether that is the example repository. */
export interface ResolvedCatalog {
  config: Config;
  usesExample: boolean;
}

/**
 * Resolves the config file (`--config`, else `hermetic.config.json` in the working directory, else the shipped one)
 * and the repos to watch (`--repo`, else the config's, else the example), keeping only `--builder` builders when
 * named. Throws ConfigError naming the flag or file, the field and what was expected.
 */
export async function resolveCatalog(request: CatalogRequest): Promise<ResolvedCatalog> {
  const file = request.config ?? ((await pathExists(join(request.cwd, 'hermetic.config.json'))) ? join(request.cwd, 'hermetic.config.json') : shippedConfigFile);
  const config = await loadConfig(file);
  for (const name of request.builders) {
    if (!config.builders.has(name)) {
      throw new ConfigError(`--builder ${name}: unknown builder; expected one of: ${[...config.builders.keys()].join(', ')} (from ${file})`);
    }
  }
  for (const branch of request.branches) {
    if (!isSafeBranchName(branch)) throw new ConfigError(`--branch ${JSON.stringify(branch)}: expected a branch name of letters, digits, ".", "_", "/" or "-"`);
  }
  const chosen = request.builders.length > 0 ? request.builders : undefined;
  let repos: Repo[];
  let usesExample = false;
  if (request.repos.length > 0) {
    const names = new Set<string>();
    repos = request.repos.map((url) => {
      if (url.startsWith('-')) throw new ConfigError(`--repo ${url}: expected a git URL or path`);
      const local = !/^[a-z][a-z0-9+.-]*:/i.test(url) && !/^[^/]+@[^/]+:/.test(url);
      const name = uniqueName(repoNameFromUrl(url), names);
      return { name, url: local ? resolve(request.cwd, url) : url, branches: request.branches.length > 0 ? request.branches : ['main'], builders: chosen ?? ['local'], backfill: 10 };
    });
    for (const repo of repos) requireBuilders(repo, config, file);
  } else if (config.repos.length > 0) {
    repos = config.repos
      .map((repo) => ({ ...repo, builders: chosen ? repo.builders.filter((name) => chosen.includes(name)) : repo.builders }))
      .filter((repo) => repo.builders.length > 0);
    if (repos.length === 0) throw new ConfigError(`--builder ${request.builders.join(', ')}: no repo in ${file} uses these builders`);
  } else {
    usesExample = true;
    repos = [{ name: 'example', url: request.exampleDir, branches: ['main'], builders: chosen ?? ['local'], backfill: 10 }];
    requireBuilders(repos[0] as Repo, config, file);
  }
  return { config: { ...config, repos }, usesExample };
}

function requireBuilders(repo: Repo, config: Config, file: string): void {
  for (const name of repo.builders) {
    if (!config.builders.has(name)) {
      throw new ConfigError(`${file}: builders: no builder named "${name}" (needed for ${repo.name}); expected one of: ${[...config.builders.keys()].join(', ')}`);
    }
  }
}

function uniqueName(base: string, taken: Set<string>): string {
  let name = base;
  for (let n = 2; taken.has(name); n++) name = `${base.slice(0, 60)}-${n}`;
  taken.add(name);
  return name;
}
