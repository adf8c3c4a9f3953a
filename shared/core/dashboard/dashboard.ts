import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeError } from '../errors.ts';
import { buildLinks } from '../model/links.ts';
import type { Build, TestSummary } from '../model/types.ts';
import { blobKeys } from '../model/wire.ts';
import type { BlobStore } from '../../ports/blobs.ts';
import type { Logger } from '../../ports/log.ts';
import type { DeadLetters } from '../../ports/messages.ts';
import { collections, type StateStore } from '../../ports/state.ts';
import type { Catalog } from '../pipeline/deps.ts';
import { buildCost, buildPage, contentSecurityPolicy, deadLettersPage, gridPage } from './pages.ts';
import { unitVerdicts } from '../pipeline/merged-run.ts';
import { logOf } from '../pipeline/task-log.ts';
import { branchesOf, buildDetail, gridOf, tryDetail, trybotsOf, type TryDetail } from './queries.ts';
import { pullRequestUrl, trybotsPage } from './trybot-page.ts';

export interface DashboardDeps {
  catalog: Catalog;
  state: StateStore;
  blobs: BlobStore;
  deadLetters: DeadLetters;
  logger: Logger;
  /** Public base URL, for absolute links in the API. */
  baseUrl: string;
  /**
   * The `Host` values it answers (`name:port`, as `URL.host` writes them), refusing any other 421, so that a page
   * on the web cannot reach it by DNS rebinding. Undefined: any, where a front end routes only this app's hosts to it.
   */
  hosts?: readonly string[];
}

/** A build as the API and the CLI summary show it. */
export interface BuildSummary {
  id: string;
  repo: string;
  commit: string;
  builder: string;
  status: Build['status'];
  reason?: string;
  attempts: number;
  buildUrl: string;
  logUrl: string | undefined;
  /** A sharded build's merged figures: units passed, failed and flaky, wall and aggregate time. */
  tests?: TestSummary;
}

/** The public shape of a build, with absolute links to its page and its current attempt's log. */
export function summarize(build: Build, baseUrl: string): BuildSummary {
  return {
    id: build.id,
    repo: build.repo,
    commit: build.commit,
    builder: build.builder,
    status: build.status,
    ...(build.reason === undefined ? {} : { reason: build.reason }),
    attempts: build.attempts,
    ...buildLinks(build, baseUrl),
    ...(build.sharding?.summary === undefined ? {} : { tests: build.sharding.summary }),
  };
}

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/**
 * The dashboard as one HTTP handler: the grid at `/`, a page per build, trybot requests at `/trybots`, logs as
 * text, and JSON under `/api/`.
 * Read-only; a `Host` it does not serve gets 421, a bad query parameter 400 naming it, unknown paths 404, other
 * methods 405, and a failure a 500 with a short message (never a crash). Every response carries {@link securityHeaders}.
 */
export function createDashboard(deps: DashboardDeps): Handler {
  const routes: Array<[RegExp, (match: RegExpExecArray, url: URL) => Promise<Reply>]> = [
    [/^\/$/, (_, url) => grid(url)],
    [/^\/build\/([0-9a-f]{24})$/, (match) => build(match[1] ?? '')],
    [/^\/build\/([0-9a-f]{24})\/log$/, (match) => mergedLog(match[1] ?? '')],
    [/^\/log\/([0-9a-f]{24})$/, (match) => log(match[1] ?? '')],
    [/^\/trybots$/, async (_, url) => htmlReply(trybotsPage(await recentTries(url), deps.catalog.repos).text)],
    [/^\/dead-letters$/, async () => htmlReply(deadLettersPage(await deps.deadLetters.list(100)).text)],
    [/^\/api\/repos$/, () => apiRepos()],
    [/^\/api\/grid$/, (_, url) => apiGrid(url)],
    [/^\/api\/builds$/, (_, url) => apiBuilds(url)],
    [/^\/api\/builds\/([0-9a-f]{24})$/, (match) => apiBuild(match[1] ?? '')],
    [/^\/api\/trybots$/, async (_, url) => jsonReply({ trybots: (await recentTries(url)).map(tryJson) })],
    [/^\/api\/trybots\/([0-9a-f]{24})$/, (match) => apiTry(match[1] ?? '')],
    [/^\/api\/dead-letters$/, () => apiDeadLetters()],
  ];

  return async (req, res) => {
    let reply: Reply;
    try {
      const url = new URL(req.url ?? '/', 'http://dashboard');
      const host = req.headers.host?.toLowerCase();
      if (deps.hosts !== undefined && (host === undefined || !deps.hosts.includes(host))) {
        reply = textReply(421, `this dashboard answers at ${deps.hosts.join(', ')}, not at Host ${host ?? '(none)'}\n`);
      } else if (req.method !== 'GET' && req.method !== 'HEAD') {
        reply = textReply(405, 'method not allowed\n');
      } else {
        const route = routes.map(([pattern, run]) => [pattern.exec(url.pathname), run] as const).find(([match]) => match);
        reply = route?.[0] ? await route[1](route[0], url) : textReply(404, 'not found\n');
      }
    } catch (error) {
      if (error instanceof BadQuery) {
        reply = req.url?.startsWith('/api/') === true ? jsonReply({ error: error.message }, 400) : textReply(400, `${error.message}\n`);
      } else {
        deps.logger.error('dashboard.failed', { url: req.url, error: describeError(error) });
        reply = textReply(500, 'internal error\n');
      }
    }
    res.writeHead(reply.status, { ...securityHeaders, 'content-type': reply.type, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : reply.body);
  };

  /** `?limit=`: a whole number from 1 to {@link maxLimit}, else BadQuery; `fallback` when absent. */
  function limitOf(url: URL, fallback: number): number {
    const text = url.searchParams.get('limit');
    if (text === null) return fallback;
    const limit = /^\d+$/.test(text) ? Number(text) : Number.NaN;
    if (!(limit >= 1 && limit <= maxLimit)) throw new BadQuery(`limit=${text}: expected a whole number from 1 to ${maxLimit}`);
    return limit;
  }

  function reposOf(url: URL) {
    const wanted = url.searchParams.get('repo');
    return deps.catalog.repos.filter((repo) => wanted === null || repo.name === wanted);
  }

  async function grid(url: URL): Promise<Reply> {
    const grids = await Promise.all(
      reposOf(url).map(async (repo) => ({
        grid: await gridOf(deps.state, repo.name, repo.builders, limitOf(url, 30)),
        branches: await branchesOf(deps.state, repo.name),
      })),
    );
    return htmlReply(gridPage(grids).text);
  }

  async function build(id: string): Promise<Reply> {
    const detail = await buildDetail(deps.state, id);
    return detail === undefined ? textReply(404, 'no such build\n') : htmlReply(buildPage(detail).text);
  }

  async function log(taskId: string): Promise<Reply> {
    const found = await logOf(deps.blobs, taskId);
    if (found === undefined) return textReply(404, 'no log yet\n');
    const tail = found.complete ? '' : '\n[hermetic: the task is still running; reload for more]\n';
    return { status: 200, type: 'text/plain; charset=utf-8', body: Buffer.concat([found.text, Buffer.from(tail)]) };
  }

  async function mergedLog(buildId: string): Promise<Reply> {
    const text = await deps.blobs.get(blobKeys.mergedLog(buildId));
    if (text === undefined) return textReply(404, 'no merged log: the build is not sharded, or not merged yet\n');
    return { status: 200, type: 'text/plain; charset=utf-8', body: Buffer.from(text) };
  }

  async function apiRepos(): Promise<Reply> {
    const repos = await Promise.all(
      deps.catalog.repos.map(async (repo) => ({
        name: repo.name,
        url: repo.url,
        builders: repo.builders,
        branches: await branchesOf(deps.state, repo.name),
      })),
    );
    return jsonReply({ repos });
  }

  async function apiGrid(url: URL): Promise<Reply> {
    const grids = await Promise.all(
      reposOf(url).map(async (repo) => {
        const grid = await gridOf(deps.state, repo.name, repo.builders, limitOf(url, 30));
        return {
          repo: grid.repo,
          builders: grid.builders,
          commits: grid.rows.map((row) => ({
            ...row.commit,
            builds: Object.fromEntries(
              Object.entries(row.builds).map(([name, build]) => [name, summarize(build, deps.baseUrl)]),
            ),
          })),
        };
      }),
    );
    return jsonReply({ grids });
  }

  async function apiBuilds(url: URL): Promise<Reply> {
    const where: Record<string, string> = {};
    for (const field of ['repo', 'commit', 'status'] as const) {
      const value = url.searchParams.get(field);
      if (value !== null) where[field] = value;
    }
    const builds = await deps.state.query(collections.builds, {
      where,
      orderBy: { field: 'seq', direction: 'desc' },
      limit: limitOf(url, 100),
    });
    return jsonReply({ builds: builds.map((build) => summarize(build, deps.baseUrl)) });
  }

  async function apiBuild(id: string): Promise<Reply> {
    const detail = await buildDetail(deps.state, id);
    if (detail === undefined) return jsonReply({ error: 'no such build' }, 404);
    const sharding = detail.build.sharding;
    const byId = new Map(detail.tasks.map((task) => [task.id, task]));
    const current = (ids: readonly string[] | undefined) => (ids ?? []).flatMap((taskId) => byId.get(taskId) ?? []);
    const units =
      sharding?.units === undefined
        ? undefined
        : unitVerdicts(sharding.units, current(sharding.shardTaskIds), current(sharding.retryTaskIds)).map((verdict) => ({
            name: verdict.unit.name,
            // Until the merge, a unit's verdict is only how its first run went.
            verdict: sharding.phase === 'merged' ? verdict.verdict : verdict.first.status,
            task: verdict.task.step,
            durationMs: verdict.first.durationMs,
            ...(verdict.retry === undefined ? {} : { retry: { status: verdict.retry.status, durationMs: verdict.retry.durationMs } }),
          }));
    return jsonReply({
      build: summarize(detail.build, deps.baseUrl),
      commit: detail.commit,
      ...(sharding === undefined ? {} : { sharding: { ...sharding, units } }),
      tasks: detail.tasks.map((task) => ({ ...task, logUrl: `${deps.baseUrl}/log/${task.id}` })),
      // Dollars from the price table (list prices, see shared/core/cost/prices.ts); `local`: every worker ran on this machine.
      cost: buildCost(detail.build, detail.tasks),
    });
  }

  function recentTries(url: URL): Promise<TryDetail[]> {
    return trybotsOf(deps.state, url.searchParams.get('repo') ?? undefined, limitOf(url, 30));
  }

  async function apiTry(id: string): Promise<Reply> {
    const detail = await tryDetail(deps.state, id);
    return detail === undefined ? jsonReply({ error: 'no such trybot request' }, 404) : jsonReply({ trybot: tryJson(detail) });
  }

  /** A request as the API shows it: as stored, with its pull request's GitHub page and each build's summary. */
  function tryJson({ run, builds }: TryDetail) {
    const github = deps.catalog.repos.find((repo) => repo.name === run.repo)?.github;
    return {
      ...run,
      ...(github === undefined || run.pullRequest === undefined ? {} : { pullRequestUrl: pullRequestUrl(github, run.pullRequest) }),
      builds: builds.map(({ build, ...entry }) => ({ ...entry, ...(build === undefined ? {} : { build: summarize(build, deps.baseUrl) }) })),
    };
  }

  async function apiDeadLetters(): Promise<Reply> {
    const letters = await deps.deadLetters.list(100);
    return jsonReply({
      deadLetters: letters.map(({ data, ...letter }) => ({ ...letter, data: Buffer.from(data).toString('utf8') })),
    });
  }
}

/** Sent with every dashboard response: pages, JSON and logs alike. */
const securityHeaders = {
  'content-security-policy': contentSecurityPolicy,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

/** The most rows one `?limit=` asks for. */
const maxLimit = 500;

/** A query parameter the dashboard cannot read: answered 400 with this message, which names it. */
class BadQuery extends Error {
  override name = 'BadQuery';
}

interface Reply {
  status: number;
  type: string;
  body: string | Buffer;
}

function textReply(status: number, body: string): Reply {
  return { status, type: 'text/plain; charset=utf-8', body };
}

function htmlReply(body: string): Reply {
  return { status: 200, type: 'text/html; charset=utf-8', body };
}

function jsonReply(value: unknown, status = 200): Reply {
  return { status, type: 'application/json', body: `${JSON.stringify(value, null, 2)}\n` };
}
