// How many trybot requests per second the embedded default takes in, on its real SQLite state and queue, from the
// first `try-requested` published to the last one handled (acked). Three scenarios, each on a fresh runtime:
//   accept: N distinct requests from a trusted login, each accepted with its builds created and requested
//   dedup:  one trusted request repeated N times: one try record, one set of builds
//   flood:  N requests for N commits from one untrusted login: all but the policy's waiting limit dropped
// Workers start and never end (a compute that only parks them) and commits come from an in-memory source, so the
// figure is the control plane's own; the builds' planning and launching share the process, as they would.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../shared/core/config/config.ts';
import { topics, type TryRequested } from '../shared/core/model/messages.ts';
import { publishMessage } from '../shared/core/pipeline/publish.ts';
import { collections } from '../shared/ports/state.ts';
import type { LocalRuntime } from '../shared/runtimes/local/local-runtime.ts';
import { createFakeSource } from '../test/fakes/fake-source.ts';
import { benchArgs } from './args.ts';
import { startParkedRuntime } from './parked-compute.ts';
import { describe, median } from './stats.ts';

const usage = `Usage: node bench/trybot-throughput.ts [options]
  --runs N       runs of each scenario, each on a fresh runtime (default 5)
  --requests N   requests per run (default 500)
  --builders N   builders each accepted request gets (default 2)
  --json         the figures alone as JSON on stdout
  --help         this text`;

const values = benchArgs(usage, {
  runs: { type: 'string', default: '5' },
  requests: { type: 'string', default: '500' },
  builders: { type: 'string', default: '2' },
  json: { type: 'boolean', default: false },
});
const [runs, requests, builderCount] = [values.runs, values.requests, values.builders].map(Number) as [number, number, number];
if (![runs, requests, builderCount].every((value) => Number.isInteger(value) && value > 0)) {
  process.stderr.write(`trybot-throughput: --runs, --requests and --builders want positive integers\n${usage}\n`);
  process.exit(2);
}

const trusted = 'trusted-dev';
const untrusted = 'flooder';
const catalog = parseConfig(
  {
    repos: [{ name: 'bench', url: '/bench', branches: ['main'], builders: Array.from({ length: builderCount }, (_, i) => `b${i}`) }],
    builders: Object.fromEntries(Array.from({ length: builderCount }, (_, i) => [`b${i}`, { type: 'command', command: 'true' }])),
    trybots: { trusted: { users: [trusted] } },
  },
  'bench-config.json',
);
const waitingLimit = catalog.trybots?.maxWaitingPerRequester ?? 0;

/** Each scenario: who asks, for distinct commits or the same one, and what it must leave in the state. */
const scenarios = {
  accept: {
    label: `accept: ${requests} distinct trusted requests`,
    requester: trusted,
    distinct: true,
    expect: { tries: requests, status: 'accepted', builds: requests * builderCount },
  },
  dedup: {
    label: `dedup: one trusted request x ${requests}`,
    requester: trusted,
    distinct: false,
    expect: { tries: 1, status: 'accepted', builds: builderCount },
  },
  flood: {
    label: `flood: ${requests} untrusted requests from one login`,
    requester: untrusted,
    distinct: true,
    expect: { tries: Math.min(waitingLimit, requests), status: 'waiting-approval', builds: 0 },
  },
} as const;
type Scenario = keyof typeof scenarios;

/** One run of a scenario on a fresh runtime: requests per second, and what is wrong with what it left in the state. */
async function once(scenario: Scenario): Promise<{ rate: number; problems: string[] }> {
  const { requester, distinct } = scenarios[scenario];
  const dir = await mkdtemp(join(tmpdir(), 'hermetic-bench-try-'));
  const source = createFakeSource();
  const commits = Array.from({ length: distinct ? requests : 1 }, () => source.push('bench', 'refs/pull/1/head'));
  const runtime = await startParkedRuntime(dir, catalog, source);
  try {
    const begin = performance.now();
    for (let i = 0; i < requests; i++) {
      const request: TryRequested = { v: 1, repo: 'bench', commit: commits[i % commits.length] ?? '', requester, pullRequest: 1, via: 'topic' };
      await publishMessage(runtime.queue, topics.tryRequested, request);
    }
    await requestsHandled(runtime);
    const seconds = (performance.now() - begin) / 1000;
    return { rate: requests / seconds, problems: await check(runtime, scenario) };
  } finally {
    await runtime.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Resolves once every published request has been handled and acked; throws after a minute, saying how many are left. */
async function requestsHandled(runtime: LocalRuntime): Promise<void> {
  const until = Date.now() + 60_000;
  for (let left = await runtime.queue.backlog('trybot'); left.count > 0; left = await runtime.queue.backlog('trybot')) {
    if (Date.now() > until) throw new Error(`${left.count} request(s) still unhandled after a minute`);
    await sleep(1);
  }
}

/** How the state differs from what the scenario should leave: tries, their statuses, trybot builds, no dead letters. */
async function check(runtime: LocalRuntime, scenario: Scenario): Promise<string[]> {
  const { state } = runtime.deps;
  const tries = await state.query(collections.trybots);
  const builds = (await state.query(collections.builds)).filter((build) => build.trybot === true);
  const dead = await runtime.queue.list();
  const expected = scenarios[scenario].expect;
  const statuses = new Set(tries.map((run) => run.status));
  return [
    tries.length === expected.tries ? undefined : `${tries.length} try record(s), expected ${expected.tries}`,
    tries.length === 0 || (statuses.size === 1 && statuses.has(expected.status)) ? undefined : `statuses ${[...statuses].join(', ')}, expected ${expected.status}`,
    builds.length === expected.builds ? undefined : `${builds.length} trybot build(s), expected ${expected.builds}`,
    dead.length === 0 ? undefined : `${dead.length} dead letter(s), the first: ${dead[0]?.reason}`,
  ].filter((problem) => problem !== undefined);
}

const say = (line: string) => process.stderr.write(`${line}\n`);
say(`trybot throughput: ${requests} requests per run, ${builderCount} builder(s), waiting limit ${waitingLimit}, ${runs} runs`);
const rates: Record<Scenario, number[]> = { accept: [], dedup: [], flood: [] };
let failed = false;
for (const scenario of Object.keys(scenarios) as Scenario[]) {
  for (let run = 1; run <= runs; run++) {
    const { rate, problems } = await once(scenario);
    rates[scenario].push(rate);
    failed ||= problems.length > 0;
    say(`  ${scenario} run ${run}: ${rate.toFixed(0)} requests/s${problems.length === 0 ? '' : `, WRONG: ${problems.join('; ')}`}`);
  }
}

if (values.json) {
  const figure = (list: number[]) => ({ median: median(list), min: Math.min(...list), max: Math.max(...list), runs: list });
  process.stdout.write(`${JSON.stringify({ requests, builders: builderCount, waitingLimit, accept: figure(rates.accept), dedup: figure(rates.dedup), flood: figure(rates.flood) }, null, 2)}\n`);
} else {
  for (const scenario of Object.keys(scenarios) as Scenario[]) console.log(`${scenarios[scenario].label}: ${describe(rates[scenario], 'requests/s')}`);
  console.log(
    `summary: accept ${median(rates.accept).toFixed(0)}/s, dedup ${median(rates.dedup).toFixed(0)}/s, flood ${median(rates.flood).toFixed(0)}/s; ` +
      (failed ? 'some runs came out WRONG (see above)' : `every run came out right (dedup: 1 try, ${builderCount} builds; flood: ${waitingLimit} waiting, the rest dropped)`),
  );
}
if (failed) process.exitCode = 1;
