import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { connectGitHub } from '../adapters/github/connect.ts';
import { readGitHubEnvironment } from '../core/config/github-environment.ts';
import { isCommitHash } from '../core/model/refs.ts';
import { summarize } from '../core/dashboard/dashboard.ts';
import { topics, TryRequested, validate } from '../core/model/messages.ts';
import { terminalBuildStatuses, type TryMode, type TryRun } from '../core/model/types.ts';
import type { PullRequest } from '../ports/github.ts';
import type { MessageQueue } from '../ports/messages.ts';
import { silentLogger } from '../ports/log.ts';
import { collections, type StateStore } from '../ports/state.ts';
import { publishMessage } from '../core/pipeline/publish.ts';
import { chooseBuilders, tryIdOf } from '../core/trybots/try-modes.ts';
import { resolveCatalog } from './catalog.ts';
import { exitCodes, UsageError, type Io } from './io.ts';
import { pathExists } from '../path-exists.ts';
import { describeError } from '../core/errors.ts';

export const tryHelp = `Usage: hermetic try --repo NAME (--commit HASH | --pr N) --as LOGIN [options]
       hermetic try --repo NAME --list

Asks for a trybot run of one exact commit of a watched repo: it is built on the repo's trybot builders (or those
named) with trybot shard counts, if LOGIN is trusted (the config's trybots.trusted), and otherwise waits until a
trusted person approves that commit. The request goes to the pipeline on this machine (the data directory of
\`hermetic up\`, running now or started later), or with --project to the try-requested topic on Google Cloud.

Options:
  --repo NAME          the watched repo (its name in the config)
  --commit HASH        the full commit hash to build (default, with --pr: the pull request's head now)
  --as LOGIN           the GitHub login asking; the trust check applies to it
  --pr N               the pull request it is the head of (its ref refs/pull/N/head is fetched)
  --list               list the repo's open pull requests, with their trybot requests on this machine
  --ref REF            a ref to fetch the commit from, when it is on no watched branch and no pull request
  --base HASH          what the change is against, for builders chosen by the files it touches
  --builder NAME       build on this builder (repeatable; default: the repo's trybot builders)
  --make               run the make step only
  --tests A,B          run only these test units
  --config FILE        config file (default: ./hermetic.config.json, else the one shipped with hermetic)
  --data DIR           the local pipeline's data directory (default: ./.hermetic)
  --project ID         publish to Pub/Sub in this Google Cloud project instead
  --wait               on this machine: wait for the verdicts (needs \`hermetic up\` running on --data)
  --timeout SECONDS    with --wait: give up after this long (default: 3600)
  --json               print the request (and with --wait, the verdicts) as JSON on stdout
  -h, --help           show this help

GitHub access for --pr without --commit, and for --list: GITHUB_TOKEN, or HERMETIC_GITHUB_APP_ID and
GITHUB_APP_PRIVATE_KEY; HERMETIC_GITHUB_API_URL for GitHub Enterprise.

Exit status: 0 when the request was published (with --wait: every build passed), 1 when it could not be or a
build did not pass, 2 for bad usage or config, 3 with --wait when the request waits for approval, 130 when
interrupted.`;

const waitingForApproval = 3;

/** `hermetic try`: validates a trybot request against the config, publishes it, and with --wait follows it. */
export async function tryCommand(args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      repo: { type: 'string' },
      commit: { type: 'string' },
      as: { type: 'string' },
      pr: { type: 'string' },
      list: { type: 'boolean', default: false },
      ref: { type: 'string' },
      base: { type: 'string' },
      builder: { type: 'string', multiple: true, default: [] },
      make: { type: 'boolean', default: false },
      tests: { type: 'string' },
      config: { type: 'string' },
      data: { type: 'string' },
      project: { type: 'string' },
      wait: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '3600' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout(tryHelp);
    return exitCodes.ok;
  }
  if (values.repo === undefined) throw new UsageError('--repo is required');
  if (!values.list && values.as === undefined) throw new UsageError('--as is required: the GitHub login asking');
  if (values.commit !== undefined && !isCommitHash(values.commit)) throw new UsageError(`--commit ${values.commit}: expected a full commit hash (40 hex digits)`);
  if (!values.list && values.commit === undefined && values.pr === undefined) throw new UsageError('--commit or --pr is required');
  if (values.make && values.tests !== undefined) throw new UsageError('--make and --tests ask for different runs; give one');
  if (values.wait && values.project !== undefined) throw new UsageError('--wait follows the pipeline on this machine; it cannot be used with --project');
  const timeoutSeconds = Number(values.timeout);
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw new UsageError(`--timeout ${values.timeout}: expected a number of seconds`);
  const pullRequest = values.pr === undefined ? undefined : Number(values.pr);
  if (pullRequest !== undefined && (!Number.isInteger(pullRequest) || pullRequest < 1)) throw new UsageError(`--pr ${values.pr}: expected a pull request number`);

  const dataDir = resolve(io.cwd, values.data ?? '.hermetic');
  const { config } = await resolveCatalog({
    ...(values.config === undefined ? {} : { config: values.config }),
    repos: [],
    branches: [],
    builders: [],
    cwd: io.cwd,
    exampleDir: join(dataDir, 'example'),
  });
  const repo = config.repos.find((candidate) => candidate.name === values.repo);
  if (repo === undefined) throw new UsageError(`--repo ${values.repo}: not a watched repo in ${config.file}; expected one of: ${config.repos.map((r) => r.name).join(', ') || '(none)'}`);
  const github = () => {
    const environment = readGitHubEnvironment(process.env);
    if (environment === undefined || repo.github === undefined) {
      throw new UsageError(`${values.list ? '--list' : '--pr without --commit'} asks GitHub, which needs ${repo.github === undefined ? `repo ${repo.name} on GitHub (repos[].github)` : 'GITHUB_TOKEN, or HERMETIC_GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY'}`);
    }
    return { api: connectGitHub(environment, { logger: silentLogger }).api, where: repo.github };
  };
  if (values.list) {
    const { api, where } = github();
    return listPullRequests(io, values.json, await api.openPullRequests(where), values.project === undefined ? dataDir : undefined, repo.name);
  }
  let commit = values.commit;
  let base = values.base;
  if (commit === undefined) {
    const { api, where } = github();
    const pull = await api.pullRequest(where, pullRequest ?? 0);
    if (pull.state !== 'open') throw new UsageError(`--pr ${pullRequest}: pull request #${pull.number} is ${pull.state}`);
    commit = pull.head.sha;
    base ??= pull.base.sha;
    io.stderr(`hermetic: pull request #${pull.number} (${pull.title}) is at ${commit.slice(0, 12)}`);
  }
  const builders = values.builder.length > 0 ? values.builder : undefined;
  const chosen = chooseBuilders(repo, config.builders, builders, []);
  if ('error' in chosen) throw new UsageError(`--builder: ${chosen.error}`);
  const mode: TryMode = values.make ? { kind: 'make' } : values.tests !== undefined ? { kind: 'tests', tests: values.tests.split(',').filter((name) => name !== '') } : { kind: 'full' };
  let request: TryRequested;
  try {
    request = validate(
      TryRequested,
      {
        v: 1,
        repo: repo.name,
        commit,
        requester: values.as,
        via: 'cli',
        ...(pullRequest === undefined ? {} : { pullRequest }),
        ...(values.ref === undefined ? {} : { ref: values.ref }),
        ...(base === undefined ? {} : { base }),
        ...(builders === undefined ? {} : { builders }),
        ...(mode.kind === 'full' ? {} : { mode }),
      },
      'trybot request',
    );
  } catch (error) {
    throw new UsageError(describeError(error));
  }
  const id = tryIdOf(request);

  if (values.project !== undefined) {
    const { PubSub } = await import('@google-cloud/pubsub');
    const { createPubsubPublisher } = await import('../adapters/gcp/pubsub-publisher.ts');
    const messageId = await publishMessage(createPubsubPublisher({ pubsub: new PubSub({ projectId: values.project }) }), topics.tryRequested, request);
    published(io, values.json, request, id, messageId);
    return exitCodes.ok;
  }

  const code = await withLocalPipeline(io, dataDir, async ({ state, queue }) => {
    const { defaultSubscription } = await import('../runtimes/local/local-runtime.ts');
    // The runtime makes its subscriptions when it starts; made here too, a request sent before then is kept for it.
    await queue.subscribe(topics.tryRequested, 'trybot', defaultSubscription);
    const messageId = await publishMessage(queue, topics.tryRequested, request);
    published(io, values.json && !values.wait, request, id, messageId);
    if (!values.wait) return exitCodes.ok;
    // Ctrl-C stops the waiting, not the request: it stays published, and the pipeline goes on with it.
    let stopped = false;
    const interrupted = io.interrupted.then(() => {
      stopped = true;
      io.stderr(`hermetic: stopped waiting; trybot request ${id} goes on (see /trybots on the dashboard)`);
      return exitCodes.interrupted;
    });
    const following = follow(state, () => queue.backlog('trybot'), id, { io, json: values.json, until: Date.now() + timeoutSeconds * 1000, stopped: () => stopped });
    const first = await Promise.race([following, interrupted]);
    stopped = true;
    // The loop ends at its next turn; the database closes after it.
    await following;
    return first;
  });
  if (code === undefined) throw new UsageError(`--data ${dataDir}: no hermetic pipeline has run here; start one with: hermetic up --data ${dataDir}`);
  return code;
}

/**
 * Runs `use` over the state and queue of the local pipeline whose data directory is `dataDir`, closing them after;
 * undefined, running nothing, when no pipeline has run there.
 */
async function withLocalPipeline<T>(io: Io, dataDir: string, use: (pipeline: { state: StateStore; queue: MessageQueue }) => Promise<T>): Promise<T | undefined> {
  const { localDatabasePath, openLocalStore } = await import('../adapters/local/local-store.ts');
  if (!(await pathExists(localDatabasePath(dataDir)))) return undefined;
  const store = openLocalStore(dataDir, { owner: false, onCheckpointFailure: (reason) => io.stderr(`hermetic: ${reason}`) });
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

/** Prints the open pull requests, each with the trybot requests recorded for its head in the data directory, if any. */
async function listPullRequests(io: Io, json: boolean, pulls: PullRequest[], dataDir: string | undefined, repo: string): Promise<number> {
  const recorded = dataDir === undefined ? undefined : await withLocalPipeline(io, dataDir, ({ state }) => state.query(collections.trybots, { where: { repo } }));
  const runs = recorded ?? [];
  const rows = pulls.map((pull) => ({ ...pull, trybots: runs.filter((run) => run.commit === pull.head.sha).map((run) => ({ id: run.id, status: run.status, requesters: run.requesters })) }));
  if (json) io.stdout(JSON.stringify(rows, null, 2));
  else if (rows.length === 0) io.stdout('No open pull requests.');
  else {
    for (const row of rows) {
      const tries = row.trybots.map((run) => `${run.status} (${run.requesters.join(', ')})`).join('; ') || 'no trybot request';
      io.stdout(`#${row.number} ${row.head.sha.slice(0, 12)} ${row.author}${row.fromFork ? ' (fork)' : ''}: ${row.title} [${tries}]`);
    }
  }
  return exitCodes.ok;
}

function published(io: Io, json: boolean, request: TryRequested, id: string, messageId: string): void {
  if (json) io.stdout(JSON.stringify({ tryId: id, messageId, request }, null, 2));
  io.stderr(`hermetic: trybot request ${id} for ${request.repo} ${request.commit.slice(0, 12)} as ${request.requester} published (message ${messageId})`);
}

/**
 * Waits for the pipeline to take the request (the trybot subscription's backlog empties), then for the request to be
 * decided and its builds to have verdicts, reading the pipeline's state; then says how they went.
 */
async function follow(
  state: StateStore,
  backlog: () => Promise<{ count: number }>,
  id: string,
  options: { io: Io; json: boolean; until: number; stopped: () => boolean },
): Promise<number> {
  const { io } = options;
  let said = '';
  while (!options.stopped()) {
    const taken = (await backlog()).count === 0;
    const run = taken ? await state.get(collections.trybots, id) : undefined;
    const builds = await Promise.all((run?.builds ?? []).map((entry) => state.get(collections.builds, entry.buildId)));
    const line = !taken
      ? 'waiting for the pipeline to take the request (is `hermetic up` running on this data directory?)'
      : run === undefined
        ? 'the request was taken but not recorded: see the dead letters on the dashboard'
        : describeRun(run, builds.filter((build) => build !== undefined).length);
    if (line !== said) io.stderr(`hermetic: ${(said = line)}`);
    if (taken && run === undefined) return exitCodes.failure;
    if (run?.status === 'waiting-approval' || run?.status === 'rejected') {
      if (options.json) io.stdout(JSON.stringify({ tryId: id, status: run.status, reason: run.reason ?? null, builds: [] }, null, 2));
      return run.status === 'rejected' ? exitCodes.failure : waitingForApproval;
    }
    const done = run?.status === 'accepted' && builds.every((build) => build !== undefined && terminalBuildStatuses.includes(build.status));
    if (done) {
      const summaries = builds.flatMap((build, index) => (build === undefined ? [] : [{ ...summarize(build, ''), reused: run.builds[index]?.reused === true }]));
      if (options.json) io.stdout(JSON.stringify({ tryId: id, status: run.status, builds: summaries }, null, 2));
      else io.stdout(summaries.map((build) => `${build.status.padEnd(13)} ${build.builder}${build.reused ? ' (reused)' : ''}${build.reason === undefined ? '' : `: ${build.reason}`}`).join('\n'));
      return summaries.every((build) => build.status === 'passed' || build.status === 'flaky') ? exitCodes.ok : exitCodes.failure;
    }
    if (Date.now() > options.until) {
      io.stderr(`hermetic: gave up waiting for trybot request ${id}`);
      return exitCodes.failure;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return exitCodes.interrupted;
}

function describeRun(run: TryRun, known: number): string {
  if (run.status !== 'accepted') return `${run.status}${run.reason === undefined ? '' : `: ${run.reason}`}`;
  return `accepted by ${run.acceptedBy ?? '?'}: ${run.builds.map((entry) => `${entry.builder}${entry.reused ? ' (reused)' : ''}`).join(', ')} (${known} build(s) recorded)`;
}
