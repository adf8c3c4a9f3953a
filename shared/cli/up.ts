import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { summarize, type BuildSummary } from '../core/dashboard/dashboard.ts';
import { readGitHubEnvironment } from '../core/config/github-environment.ts';
import { describeError } from '../core/errors.ts';
import { collections } from '../ports/state.ts';
import { startLocalRuntime, type LocalRuntime } from '../runtimes/local/local-runtime.ts';
import { exampleRecipeDir, resolveCatalog } from './catalog.ts';
import { createConsoleLogger, createConsoleReporter } from './console.ts';
import { ensureExampleRepo } from './example-repo.ts';
import { exitCodes, UsageError, type Io } from './io.ts';
import { ensurePrerequisites, prerequisitesFor } from './prerequisites.ts';

export const upHelp = `Usage: hermetic up [options]

Runs the whole pipeline on this machine: polls the watched repos, builds every new commit on every builder in
a throwaway worker (a container where a Docker engine runs, else the process sandbox), and serves the
dashboard. Builder images that are missing are built first. With no --repo and no repos in the config, watches
an example repository made on first run.

Before anything is built, it checks that this machine has what the run needs: git, and the tools of each builder
that will run in the process sandbox (go for go-module builders). As root (or with sudo that asks no password) it
installs what is missing from Debian's archive with apt-get, saying so; otherwise, or with --no-install, it names
the Debian packages and stops.

Options:
  --repo PATH_OR_URL   watch this git repo (repeatable); its builders are --builder, else "local"
  --branch NAME        branch to watch in each --repo (repeatable; default: main)
  --builder NAME       run only these builders (repeatable)
  --config FILE        config file (default: ./hermetic.config.json, else the one shipped with hermetic)
  --data DIR           state, logs and workers live here (default: ./.hermetic)
  --port N             dashboard port on 127.0.0.1 (default: 8080; 0 picks a free one)
  --no-docker          run every builder in the process sandbox, even where a Docker engine runs
  --no-install         never install a missing program (git, or a sandboxed builder's go); name it and stop
  --once               poll once, run every build found (and any an earlier run left unfinished) to its
                       verdict, print a summary and exit
  --json               with --once: print the summary as a JSON array on stdout
  --verbose            log every pipeline event on stderr
  -h, --help           show this help

Environment (optional): GITHUB_TOKEN, or HERMETIC_GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY, give GitHub access for
trybots, statuses and polling repos on GitHub; HERMETIC_GITHUB_API_URL for GitHub Enterprise; HERMETIC_WEBHOOK_SECRET
serves /try comments at /webhook (see the README's Trybots).

Exit status: 0 when the pipeline worked (whatever the verdicts), 1 when it did not (a repo could not be polled,
a message was dead-lettered, this machine lacks a program the run needs), 2 for bad usage or config, 130 when
interrupted.`;

/** `hermetic up`: runs the embedded stack until Ctrl-C, or with --once until the builds found have verdicts. */
export async function up(args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      repo: { type: 'string', multiple: true, default: [] },
      branch: { type: 'string', multiple: true, default: [] },
      builder: { type: 'string', multiple: true, default: [] },
      config: { type: 'string' },
      data: { type: 'string' },
      port: { type: 'string', default: '8080' },
      'no-docker': { type: 'boolean', default: false },
      'no-install': { type: 'boolean', default: false },
      once: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout(upHelp);
    return exitCodes.ok;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new UsageError(`--port ${values.port}: expected a port number`);
  if (values.json && !values.once) throw new UsageError('--json needs --once');
  const dataDir = resolve(io.cwd, values.data ?? '.hermetic');
  const { config, usesExample } = await resolveCatalog({
    ...(values.config === undefined ? {} : { config: values.config }),
    repos: values.repo,
    branches: values.branch,
    builders: values.builder,
    cwd: io.cwd,
    exampleDir: join(dataDir, 'example'),
  });
  const containers = values['no-docker'] ? 'off' : 'auto';
  const missing = await ensurePrerequisites(await prerequisitesFor(config, containers), { install: !values['no-install'], onLine: io.stderr });
  if (missing.length > 0) return exitCodes.failure;
  if (usesExample) await ensureExampleRepo(join(dataDir, 'example'), exampleRecipeDir);

  const logger = createConsoleLogger({ write: io.stderr, verbose: values.verbose });
  const github = readGitHubEnvironment(process.env);
  const runtime = await startLocalRuntime({
    ...(github === undefined ? {} : { github }),
    dataDir,
    catalog: config,
    logger,
    reporters: [createConsoleReporter(io.stderr)],
    pollIntervalMs: values.once ? 0 : config.pollIntervalSeconds * 1000,
    port,
    containers,
    onProgress: (line) => io.stderr(`images: ${line}`),
  });
  io.stderr(`hermetic: dashboard at ${runtime.url}/`);
  if (github !== undefined) {
    const webhook = github.webhookSecret === undefined ? 'no webhook (HERMETIC_WEBHOOK_SECRET is not set)' : `webhook at ${runtime.url}/webhook`;
    io.stderr(`hermetic: GitHub access by ${'token' in github.auth ? 'token' : 'GitHub App'}; ${webhook}`);
  }
  io.stderr(`hermetic: watching ${config.repos.map((repo) => `${repo.name} (${repo.builders.join(', ')})`).join('; ')}`);
  const interrupted = io.interrupted.then(() => exitCodes.interrupted);
  try {
    const work = values.once ? once(runtime, values.json, io) : forever(runtime);
    // When interrupted, the work is abandoned and fails as the runtime stops under it; that failure is expected.
    work.catch(() => {});
    return await Promise.race([work, interrupted]);
  } catch (error) {
    io.stderr(`hermetic: ${describeError(error)}`);
    return exitCodes.failure;
  } finally {
    io.stderr('hermetic: stopping; no worker is left behind');
    await runtime.stop();
  }
}

async function forever(runtime: LocalRuntime): Promise<number> {
  await runtime.tick();
  return new Promise<number>(() => {});
}

async function once(runtime: LocalRuntime, json: boolean, io: Io): Promise<number> {
  const startedAt = Date.now();
  // Builds an earlier run left without a verdict (it crashed, or was stopped) are finished now too, and reported.
  const unfinished = await runtime.deps.state.query(collections.builds, { where: { status: { in: ['queued', 'running'] } } });
  const poll = await runtime.pollNow();
  const ids = [...new Set([...unfinished.map((build) => build.id), ...poll.requested.map((build) => build.buildId)])];
  const recovered = unfinished.length === 0 ? '' : ` (${unfinished.length} left unfinished by an earlier run)`;
  io.stderr(`hermetic: ${ids.length} build(s) to run${recovered}`);
  await runtime.waitForBuilds(ids);
  const summaries: BuildSummary[] = [];
  for (const id of ids) {
    const build = await runtime.deps.state.get(collections.builds, id);
    if (build !== undefined) summaries.push(summarize(build, runtime.url));
  }
  if (json) io.stdout(JSON.stringify(summaries, null, 2));
  else io.stdout(summaryTable(summaries));
  const deadLetters = (await runtime.queue.list(1000)).filter((letter) => letter.at >= startedAt).length;
  for (const error of poll.errors) io.stderr(`hermetic: could not poll ${error.repo}/${error.branch}: ${error.error}`);
  if (deadLetters > 0) io.stderr(`hermetic: ${deadLetters} message(s) were dead-lettered; see ${runtime.url}/dead-letters`);
  return poll.errors.length > 0 || deadLetters > 0 ? exitCodes.failure : exitCodes.ok;
}

function summaryTable(builds: BuildSummary[]): string {
  if (builds.length === 0) return 'No new commits.';
  const counts = new Map<string, number>();
  for (const build of builds) counts.set(build.status, (counts.get(build.status) ?? 0) + 1);
  const lines = builds.map(
    (build) => `${build.status.padEnd(13)} ${build.repo} ${build.commit.slice(0, 12)} ${build.builder.padEnd(16)} ${build.logUrl ?? build.buildUrl}`,
  );
  const totals = [...counts].map(([status, count]) => `${count} ${status}`).join(', ');
  return `${lines.join('\n')}\n${builds.length} build(s): ${totals}`;
}
