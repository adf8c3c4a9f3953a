import { readFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, describeError } from '../errors.ts';
import { formatIssues } from '../model/messages.ts';
import type { Builder, GitHubRepo, Repo, Step, TestSuite, TrybotPolicy } from '../model/types.ts';
import { testSuiteOf } from '../sharding/test-suites.ts';
import { refuseProtoKeys } from './json-file.ts';
import { isGitHubLogin, isName, isSafeBranchName } from '../model/refs.ts';

/** The config file: the repos to watch and the builders that build them. Builders are data. */

// Names JavaScript objects already have: a builder or host type of that name would be found on any plain object.
const reservedNames = new Set(['__proto__', 'constructor', 'prototype']);
const reserved = (value: string) => `"${value}" is reserved (every JavaScript object has it); expected another name`;
const notReserved = <T extends z.ZodString>(schema: T) =>
  schema.refine((value) => !reservedNames.has(value), { error: (issue) => reserved(String(issue.input)) });

const name = notReserved(z.string().refine(isName, 'expected a lower-case name of letters, digits, ".", "_" or "-"'));
const hostType = (example: string) => notReserved(z.string().regex(/^[a-z0-9-]+$/, `expected a host type such as ${example}`));
const branch = z.string().refine(isSafeBranchName, 'expected a branch name of letters, digits, ".", "_", "/" or "-"');
const envMap = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'), z.string());

const builderCommon = {
  hostType: hostType('"host" or "linux-amd64"').default('host'),
  /** Where to run when `hostType` is not available on this runtime (e.g. `host` where no Docker engine runs). */
  fallbackHostType: hostType('"host"').optional(),
  env: envMap.default({}),
  timeoutSeconds: z.number().int().min(1).max(86_400).default(1200),
  maxLogBytes: z.number().int().min(4096).max(1 << 30).default(4 << 20),
  /**
   * The most a task's source or snapshot may unpack to. A built Go tree is 0.5 to 1 GB in about 20,000 entries; the
   * defaults are many times that, and stop a gzip bomb or a flood of tiny files long before the disk fills.
   */
  unpackMaxBytes: z.number().int().min(1 << 20).max(2 ** 40).default(8 * 2 ** 30),
  unpackMaxEntries: z.number().int().min(1000).max(100_000_000).default(500_000),
  maxAttempts: z.number().int().min(1).max(10).default(3),
  /** Let the steps reach the network. Off by default: tests run with loopback only (in containers). */
  network: z.boolean().default(false),
  /** May run on Spot VMs where the host type offers them: far cheaper, but preempted ones are retried. */
  spot: z.boolean().default(true),
};

const goProxyError =
  'expected a GOPROXY value: "off", or proxies separated by "," or "|", each an http(s):// URL, a file:/// directory in the proxy layout, or "direct"';

/** A GOPROXY list as the go command reads it: `off` alone, or entries of http(s) URLs, absolute file URLs and `direct`. */
function isGoProxy(value: string): boolean {
  if (value === 'off') return true;
  return value.split(/[,|]/).every((entry) => entry === 'direct' || /^https?:\/\/[^\s,|]+$/.test(entry) || /^file:\/\/\/[^\s,|]*$/.test(entry));
}

const shardCount = z.number().int().min(1).max(256);

/** Make once, snapshot, test in shards: the shard counts, and what to do with units that fail. */
const sharding = {
  /** Shards per build: a number for both, or one for post-submit builds and another for trybots. */
  shards: z
    .union([shardCount, z.strictObject({ postSubmit: shardCount, trybot: shardCount.optional() })], {
      error: 'expected a shard count (1 to 256), or { "postSubmit": N, "trybot": M }',
    })
    .optional(),
  /** Run the units that failed once more on a fresh worker, to tell flaky from failed. */
  retryFailed: z.boolean().default(true),
  snapshotMaxBytes: z.number().int().min(1 << 20).max(64 * 2 ** 30).default(8 * 2 ** 30),
};

const goModuleBuilder = z.strictObject({
  ...builderCommon,
  ...sharding,
  type: z.literal('go-module'),
  /** Package patterns for vet, build and test. */
  packages: z.array(z.string().regex(/^[A-Za-z0-9._/-]+$/, 'expected a package pattern')).min(1).default(['./...']),
  /** Where the module-fetch task gets dependencies from: a GOPROXY value; `off` fetches nothing. */
  goProxy: z.string().refine(isGoProxy, goProxyError).default('https://proxy.golang.org'),
  /** The checksum database go consults for modules go.sum does not list: a GOSUMDB value, or `off`. */
  goSumDb: z.string().regex(/^[\x21-\x7e]+( [\x21-\x7e]+)?$/, 'expected a GOSUMDB value such as "sum.golang.org" or "off"').default('sum.golang.org'),
});

/** The Go source tree itself: `make.bash`, then `go tool dist test` units in shards. */
const goTreeBuilder = z.strictObject({
  ...builderCommon,
  ...sharding,
  type: z.literal('go-tree'),
  timeoutSeconds: z.number().int().min(1).max(86_400).default(3600),
});

const commandBuilder = z.strictObject({
  ...builderCommon,
  type: z.literal('command'),
  /** Run with `sh -c` at the repo root. */
  command: z.string().min(1),
});

const builderSchema = z.discriminatedUnion('type', [goModuleBuilder, goTreeBuilder, commandBuilder], {
  error: 'expected "type": "go-module", "go-tree" or "command"',
});

// Organisations and users share GitHub's rule for logins.
const githubName = z.string().refine(isGitHubLogin, 'expected a GitHub organisation or user name');
const githubRepo = z.string().refine((full) => {
  const [owner = '', repo, ...rest] = full.split('/');
  return rest.length === 0 && isGitHubLogin(owner) && repo !== undefined && /^[A-Za-z0-9._-]{1,100}$/.test(repo);
}, 'expected "owner/name" of a GitHub repository');

/** Who may start trybots. */
const trybotsSchema = z.strictObject({
  trusted: z
    .strictObject({
      users: z.array(z.string().refine(isGitHubLogin, 'expected a GitHub login')).default([]),
      orgs: z.array(githubName).default([]),
      teams: z.array(z.string().regex(/^[A-Za-z0-9-]{1,39}\/[a-z0-9_-]{1,100}$/, 'expected "org/team-slug"')).default([]),
    })
    .default({ users: [], orgs: [], teams: [] }),
  trustCacheSeconds: z.number().int().min(0).max(86_400).default(600),
  maxWaitingPerRequester: z.number().int().min(0).max(1000).default(3),
});

/** A repo's trybot builders: defaults, and builders added when a change touches matching files. */
const repoTrybotSchema = z.strictObject({
  builders: z.array(name).min(1).optional(),
  paths: z
    .array(z.strictObject({ match: z.array(z.string().min(1)).min(1), builders: z.array(name).min(1) }))
    .default([]),
});

const repoSchema = z.strictObject({
  name: name.optional(),
  url: z
    .string()
    .min(1)
    .refine((url) => !url.startsWith('-'), 'expected a git URL or path, not something that looks like an option'),
  branches: z.array(branch).min(1).default(['main']),
  builders: z.array(name).min(1).optional(),
  backfill: z.number().int().min(1).max(1000).default(10),
  /** "owner/name" on GitHub; taken from a github.com URL when not given. */
  github: githubRepo.optional(),
  trybot: repoTrybotSchema.optional(),
});

const configSchema = z.strictObject({
  $schema: z.string().optional(),
  pollIntervalSeconds: z.number().min(1).default(60),
  repos: z.array(repoSchema).default([]),
  trybots: trybotsSchema.optional(),
  builders: z.record(name, builderSchema).refine((builders) => Object.keys(builders).length > 0, 'the config defines no builders; expected at least one'),
});

export type RawConfig = z.input<typeof configSchema>;

/** A validated config, with every builder resolved to its steps. */
export interface Config {
  file: string;
  pollIntervalSeconds: number;
  repos: Repo[];
  builders: Map<string, Builder>;
  trybots?: TrybotPolicy;
}

/** Reads and validates a config file. Throws ConfigError naming the file, the field and what was expected. */
export async function loadConfig(file: string): Promise<Config> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`${file}: cannot read config (${(error as NodeJS.ErrnoException).code ?? String(error)})`, {
      cause: error,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${file}: not valid JSON (${describeError(error)})`, { cause: error });
  }
  return parseConfig(json, file);
}

/** Validates a parsed config; `file` names it in errors. */
export function parseConfig(json: unknown, file: string): Config {
  refuseProtoKeys(json, file);
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(`${file}: ${formatIssues(parsed.error)}`);
  const raw = parsed.data;
  const builders = new Map<string, Builder>();
  for (const [builderName, builder] of Object.entries(raw.builders)) {
    const env = { ...envDefaults[builder.type], ...builder.env };
    builders.set(builderName, {
      name: builderName,
      hostType: builder.hostType,
      ...(builder.fallbackHostType === undefined ? {} : { fallbackHostType: builder.fallbackHostType }),
      steps: stepsOf(builder),
      tools: toolsOf(builder.type, env),
      env,
      timeoutSeconds: builder.timeoutSeconds,
      maxLogBytes: builder.maxLogBytes,
      unpack: { maxBytes: builder.unpackMaxBytes, maxEntries: builder.unpackMaxEntries },
      maxAttempts: builder.maxAttempts,
      network: builder.network,
      spot: builder.spot,
      ...(testsOf(builder) ?? {}),
      ...(builder.type === 'go-module' && builder.goProxy !== 'off'
        ? { modules: { proxy: builder.goProxy, sumDb: builder.goSumDb, packages: builder.packages } }
        : {}),
    });
  }
  const repos: Repo[] = [];
  const seen = new Set<string>();
  raw.repos.forEach((repo, index) => {
    const repoName = repo.name ?? repoNameFromUrl(repo.url);
    if (reservedNames.has(repoName)) throw new ConfigError(`${file}: repos.${index}.name: ${reserved(repoName)} (taken from its url)`);
    if (seen.has(repoName)) throw new ConfigError(`${file}: repos.${index}.name: "${repoName}" is used twice; expected unique repo names`);
    seen.add(repoName);
    const names = repo.builders ?? [...builders.keys()];
    const known = (list: readonly string[], field: string) =>
      list.forEach((builderName, at) => {
        if (!builders.has(builderName)) {
          throw new ConfigError(`${file}: repos.${index}.${field}.${at}: unknown builder "${builderName}"; expected one of: ${[...builders.keys()].join(', ')}`);
        }
      });
    known(names, 'builders');
    const trybot = repo.trybot === undefined ? undefined : { builders: repo.trybot.builders ?? names, paths: repo.trybot.paths };
    if (trybot !== undefined) {
      known(trybot.builders, 'trybot.builders');
      trybot.paths.forEach((rule, at) => known(rule.builders, `trybot.paths.${at}.builders`));
    }
    const github = repo.github ?? githubRepoOfUrl(repo.url);
    repos.push({
      name: repoName,
      url: repo.url,
      branches: repo.branches,
      builders: names,
      backfill: repo.backfill,
      ...(github === undefined ? {} : { github: splitGitHubRepo(github) }),
      ...(trybot === undefined ? {} : { trybot }),
    });
  });
  return { file, pollIntervalSeconds: raw.pollIntervalSeconds, repos, builders, ...(raw.trybots === undefined ? {} : { trybots: trybotPolicy(raw.trybots) }) };
}

// A hermetic Go build: no module download, no toolchain download (module changes are refused by default since
// Go 1.16). GOFLAGS and CGO_ENABLED are left to the host type's image: linux-amd64-race sets -race and cgo. The Go
// tree bootstraps with the Go toolchain the image (or host) has from Debian.
const envDefaults: Record<z.infer<typeof builderSchema>['type'], Record<string, string>> = {
  'go-module': { GOPROXY: 'off', GOTOOLCHAIN: 'local' },
  'go-tree': { GOROOT_BOOTSTRAP: '/usr/lib/go', GOPROXY: 'off' },
  command: {},
};

/**
 * What a builder type's steps take from the worker: programs on its PATH, or files by path. The Go tree bootstraps
 * with the Go in GOROOT_BOOTSTRAP (Debian's golang-go puts it in /usr/lib/go), and make.bash is a bash script.
 */
function toolsOf(type: z.infer<typeof builderSchema>['type'], env: Record<string, string>): string[] {
  switch (type) {
    case 'go-module':
      return ['go'];
    case 'go-tree':
      return [`${env['GOROOT_BOOTSTRAP'] ?? '/usr/lib/go'}/bin/go`, 'bash'];
    case 'command':
      return ['sh'];
  }
}

/** The sharded test suite of a builder that has one: a go-tree always, a go-module when it names its shards. */
function testsOf(builder: z.infer<typeof builderSchema>): { tests: TestSuite } | undefined {
  if (builder.type === 'command' || (builder.type === 'go-module' && builder.shards === undefined)) return undefined;
  const shards = builder.shards ?? defaultGoTreeShards;
  const counts = typeof shards === 'number' ? { postSubmit: shards, trybot: shards } : { postSubmit: shards.postSubmit, trybot: shards.trybot ?? shards.postSubmit };
  return {
    tests: testSuiteOf(builder.type, {
      packages: builder.type === 'go-module' ? builder.packages : [],
      network: builder.network,
      shards: counts,
      retryFailed: builder.retryFailed,
      snapshotMaxBytes: builder.snapshotMaxBytes,
    }),
  };
}

const defaultGoTreeShards = 4;

function stepsOf(builder: z.infer<typeof builderSchema>): Step[] {
  // A step's name is a label of at most 200 characters; the command itself is not cut.
  if (builder.type === 'command') return [{ name: builder.command.length > 200 ? `${builder.command.slice(0, 197)}...` : builder.command, argv: ['sh', '-c', builder.command] }];
  // The Go tree is always built by its test suite (make, then shards), never as one whole-build task.
  if (builder.type === 'go-tree') return [];
  return [
    { name: `go vet ${builder.packages.join(' ')}`, argv: ['go', 'vet', ...builder.packages] },
    { name: `go build ${builder.packages.join(' ')}`, argv: ['go', 'build', ...builder.packages] },
    { name: `go test ${builder.packages.join(' ')}`, argv: ['go', 'test', ...builder.packages], test: { fixedArgs: 2 } },
  ];
}

/** A repo name from its URL or path: the last path segment, lower-cased, without `.git`. */
export function repoNameFromUrl(url: string): string {
  const last = basename(url.replace(/[/\\]+$/, '').replace(/\.git$/, '')).toLowerCase();
  const slug = last.replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 63);
  return slug.length > 0 ? slug : 'repo';
}

function trybotPolicy(raw: z.infer<typeof trybotsSchema>): TrybotPolicy {
  return {
    users: raw.trusted.users.map((login) => login.toLowerCase()),
    orgs: raw.trusted.orgs.map((org) => org.toLowerCase()),
    teams: raw.trusted.teams.map((entry) => {
      const [org = '', team = ''] = entry.split('/');
      return { org: org.toLowerCase(), team };
    }),
    trustCacheSeconds: raw.trustCacheSeconds,
    maxWaitingPerRequester: raw.maxWaitingPerRequester,
  };
}

/** "owner/name" of a github.com URL (https, ssh or scp-like), else undefined. */
function githubRepoOfUrl(url: string): string | undefined {
  const match = /^(?:https:\/\/github\.com\/|ssh:\/\/git@github\.com\/|git@github\.com:)([A-Za-z0-9-]+\/[A-Za-z0-9._-]+?)(?:\.git)?\/?$/.exec(url);
  return match?.[1];
}

function splitGitHubRepo(full: string): GitHubRepo {
  const [owner = '', name = ''] = full.split('/');
  return { owner, name };
}
