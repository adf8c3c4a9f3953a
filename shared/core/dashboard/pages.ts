import { createHash } from 'node:crypto';
import { formatCost } from '../cost/prices.ts';
import { buildLinks } from '../model/links.ts';
import { terminalBuildStatuses, type BranchState, type Build, type Commit, type Sharding, type Task, type TryMode } from '../model/types.ts';
import type { DeadLetter } from '../../ports/messages.ts';
import { Html, html } from './html.ts';
import type { Grid } from './queries.ts';

const style = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th.builder{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;padding:4px 2px}
a{color:#036}.hash{font-family:monospace}.muted{color:#777}.err{color:#a00}
.s-passed{color:#080}.s-failed{color:#c00;font-weight:bold}.s-flaky{color:#c60}
.s-infra-failure{color:#808}.s-queued,.s-running,.s-pending,.s-launched{color:#777}.s-timed-out{color:#c00}.s-lost{color:#808}
.waiting{background:#fff4cc}
`;

const styleElement = new Html(`<style>${style}</style>`);

/**
 * What a page may load and do, sent with every dashboard response: nothing but its own style element (by hash: the
 * pages have no script, no style attribute, no image and no form; the 10 s reload is a meta refresh, which CSP does
 * not govern), in no frame.
 */
export const contentSecurityPolicy = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(style).digest('base64')}'`,
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** A whole dashboard page: `body` under the title and the links to every page, reloading itself every 10 s. */
export function page(title: string, body: Html): Html {
  return html`<!doctype html><html><head><meta charset="utf-8"><title>${title}</title>
<meta http-equiv="refresh" content="10">${styleElement}</head><body>
<p><a href="/">hermetic</a> · <a href="/trybots">trybots</a> · <a href="/api/repos">api</a></p>${body}</body></html>`;
}

/** What a trybot runs, in words: "full", "make", or "tests: " and the test names. */
export function modeText(mode: TryMode | undefined): string {
  if (mode === undefined) return 'full';
  return mode.kind === 'tests' ? `tests: ${mode.tests.join(', ')}` : mode.kind;
}

const cellLabels: Record<Build['status'], string> = {
  queued: '…',
  running: '▶',
  passed: 'ok',
  failed: 'fail',
  flaky: 'flaky',
  'infra-failure': 'infra',
};

/** The grid: per repo, commits down (newest first), builders across, each cell the verdict linked to its build. */
export function gridPage(grids: Array<{ grid: Grid; branches: BranchState[] }>): Html {
  const sections = grids.map(
    ({ grid, branches }) => html`<h2>${grid.repo}</h2>
${branches.map(
  (branch) =>
    html`<div class="muted">${branch.branch}: ${branch.head?.slice(0, 12) ?? 'not polled yet'}, polled ${new Date(branch.polledAt).toISOString()}${
      branch.error === undefined ? '' : html` <span class="err">error: ${branch.error}</span>`
    }</div>`,
)}
${
  grid.rows.length === 0
    ? html`<p class="muted">No commits yet.</p>`
    : html`<table><tr><th>commit</th><th>when</th><th>author</th><th>subject</th>${grid.builders.map(
        (builder) => html`<th class="builder">${builder}</th>`,
      )}</tr>
${grid.rows.map(
  (row) => html`<tr><td class="hash">${row.commit.hash.slice(0, 12)}</td>
<td class="muted">${new Date(row.commit.committedAt).toISOString().slice(0, 16).replace('T', ' ')}</td>
<td>${row.commit.author}</td><td>${row.commit.subject.slice(0, 80)}</td>
${grid.builders.map((builder) => {
  const build = row.builds[builder];
  return build === undefined
    ? html`<td></td>`
    : html`<td><a class="s-${build.status}" href="${buildLinks(build, '').logUrl ?? `/build/${build.id}`}" title="${build.status}${build.reason === undefined ? '' : `: ${build.reason}`}">${cellLabels[build.status]}</a> <a class="muted" href="/build/${build.id}" title="build details">›</a></td>`;
})}</tr>`,
)}</table>`
}`,
  );
  return page('hermetic', html`<h1>Builds</h1>${sections}`);
}

/** One build: its verdict, and every attempt with its steps and a link to its log; a sharded build's shards. */
export function buildPage(detail: { build: Build; tasks: Task[]; commit: Commit | undefined }): Html {
  const { build, tasks, commit } = detail;
  return page(
    `${build.builder} ${build.commit.slice(0, 12)}`,
    html`<h1>${build.repo} ${build.commit.slice(0, 12)} on ${build.builder}:
<span class="s-${build.status}">${build.status}</span></h1>
${build.trybot === true ? html`<p>trybot · mode: ${modeText(build.mode)}</p>` : ''}
${commit === undefined ? '' : html`<p>${commit.subject} <span class="muted">(${commit.author})</span></p>`}
${build.reason === undefined ? '' : html`<p class="err">${build.reason}</p>`}
<p class="muted">${build.finishedAt !== undefined && build.startedAt !== undefined ? `took ${seconds(build.finishedAt - build.startedAt)} · ` : ''}cost ${buildCostText(build, tasks)}
${build.reportedAt === undefined ? '' : ' · reported'}</p>
${modulesSection(build, tasks.filter((task) => task.step === 'modules'))}
${build.sharding === undefined ? attemptsTable(tasks.filter((task) => task.step !== 'modules')) : shardedSection(build, build.sharding, tasks.filter((task) => task.step !== 'modules'))}`,
  );
}

/** A build's module cache: fetched by its own task (each attempt shown), or reused from an earlier build. */
function modulesSection(build: Build, fetches: readonly Task[]): Html | string {
  const modules = build.modules;
  if (modules === undefined) return '';
  const how = modules.reused === true ? 'reused from an earlier build with the same module files' : modules.phase === 'fetch' ? 'being fetched' : 'fetched by this build';
  return html`<h2>modules</h2><p>module cache ${modules.key.slice(0, 12)}: ${how}</p>${fetches.length === 0 ? '' : attemptsTable(fetches)}`;
}

/** What a build cost so far, and on how many workers: "local" when every worker ran on this machine. */
export function buildCost(build: Build, tasks: readonly Task[]): { usd: number; local: boolean; workers: number; unpriced: number } {
  const ran = tasks.filter((task) => task.launchedAt !== undefined);
  return {
    usd: build.costUsd ?? 0,
    local: ran.every((task) => task.machine === undefined),
    workers: ran.length,
    unpriced: ran.filter((task) => task.machine !== undefined && task.finishedAt !== undefined && task.costUsd === undefined).length,
  };
}

function buildCostText(build: Build, tasks: readonly Task[]): string {
  const cost = buildCost(build, tasks);
  const workers = `${cost.workers} worker${cost.workers === 1 ? '' : 's'}`;
  if (cost.local) return `local (${workers} on this machine)`;
  return `${formatCost(cost.usd, false)} on ${workers}${cost.unpriced > 0 ? `, ${cost.unpriced} on machines with no price` : ''}${terminalBuildStatuses.includes(build.status) ? '' : ' so far'}`;
}

function taskCostText(task: Task): string {
  if (task.finishedAt === undefined) return '';
  const machine = task.machine === undefined ? '' : ` ${task.machine.type}${task.machine.spot ? ' spot' : ''}`;
  return `${formatCost(task.costUsd, task.machine === undefined)}${machine}`;
}

function attemptsTable(tasks: readonly Task[]): Html {
  return html`<table><tr><th>attempt</th><th>host</th><th>status</th><th>steps</th><th>cost</th><th>log</th><th>why</th></tr>
${tasks.map(
  (task) => html`<tr><td>${task.attempt}</td><td>${task.hostType ?? ''}</td><td class="s-${task.status}">${task.status}</td>
<td>${(task.steps ?? []).map((step) => html`<div>${step.name}: ${step.exitCode ?? step.signal ?? '?'} in ${seconds(step.durationMs)}</div>`)}</td>
<td>${taskCostText(task)}</td>
<td><a href="/log/${task.id}">log</a>${task.logTruncated ? ' (cut)' : ''}</td><td>${task.reason ?? ''}</td></tr>`,
)}</table>`;
}

/** The make task, the plan, then every shard and retry task (each attempt) with its units, times and logs. */
function shardedSection(build: Build, sharding: Sharding, tasks: readonly Task[]): Html {
  const { plan, summary } = sharding;
  const make = tasks.filter((task) => task.step === 'make');
  const runs = tasks.filter((task) => task.step !== 'make').sort((a, b) => stepOrder(a.step) - stepOrder(b.step) || a.attempt - b.attempt);
  const snapshot = make.find((task) => task.snapshot !== undefined)?.snapshot;
  return html`<p>${sharding.phase === 'merged' ? html`<a href="/build/${build.id}/log">merged log</a> · ` : ''}phase: ${sharding.phase}
${sharding.snapshotReused === true ? ' · snapshot reused from an earlier build of this tree' : ''}
${snapshot === undefined ? '' : ` · snapshot ${megabytes(snapshot.bytes)} (${snapshot.files} files), packed in ${snapshot.packSeconds.toFixed(1)}s, uploaded in ${snapshot.uploadSeconds.toFixed(1)}s`}</p>
${plan === undefined ? '' : html`<p class="muted">plan: ${plan.shards.length} shards of ${plan.requestedShards} asked, estimated makespan ${plan.makespan.toFixed(1)}s against an ideal of ${plan.bound.toFixed(1)}s${plan.splits.map((split) => `; ${split.unit} cut into ${split.parts}`)}${plan.notes.map((note) => `; ${note}`)}</p>`}
${summary === undefined ? '' : html`<p>${summary.units} units: ${summary.passed} passed, ${summary.failed} failed, ${summary.flaky} flaky (${summary.retried} retried) ·
wall ${seconds(summary.wallMs)}, aggregate ${seconds(summary.aggregateMs)}, saved ${seconds(Math.max(0, summary.aggregateMs - summary.wallMs))} ·
slowest shard ${seconds(summary.makespanMs)} (planned ${seconds(summary.estimatedMakespanMs)})${summary.makeMs > 0 ? ` · make ${seconds(summary.makeMs)}` : ''}</p>`}
${make.length === 0 ? '' : html`<h2>make</h2>${attemptsTable(make)}`}
${runs.length === 0 ? '' : html`<h2>shards</h2><table><tr><th>task</th><th>attempt</th><th>host</th><th>status</th><th>planned</th><th>took</th><th>unpack</th><th>cost</th><th>units</th><th>log</th><th>why</th></tr>
${runs.map((task) => {
  const shard = plan?.shards[Number(/\d+$/.exec(task.step)?.[0])];
  return html`<tr><td>${task.step}</td><td>${task.attempt}</td><td>${task.hostType ?? ''}</td><td class="s-${task.status}">${task.status}</td>
<td>${task.step.startsWith('shard-') && shard !== undefined ? `${shard.estimate.toFixed(1)}s` : ''}</td>
<td>${task.startedAt !== undefined && task.workerFinishedAt !== undefined ? seconds(task.workerFinishedAt - task.startedAt) : ''}</td>
<td>${task.sourceSeconds === undefined ? '' : `${task.sourceSeconds.toFixed(1)}s`}</td>
<td>${taskCostText(task)}</td>
<td>${(task.units ?? []).map((unit, index) => {
    const result = task.unitResults?.[index];
    return html`<div><span class="s-${result?.status === 'passed' ? 'passed' : result === undefined ? 'pending' : 'failed'}">${result?.status ?? '…'}</span> ${unit.name}${result === undefined ? '' : ` ${seconds(result.durationMs)}`}</div>`;
  })}</td>
<td><a href="/log/${task.id}">log</a>${task.logTruncated ? ' (cut)' : ''}</td><td>${task.reason ?? ''}</td></tr>`;
})}</table>`}`;
}

/** make, then shard-0, shard-1, ..., then retry-0, retry-1, ... */
function stepOrder(step: string): number {
  const index = Number(/\d+$/.exec(step)?.[0] ?? 0);
  return step.startsWith('retry-') ? 1_000_000 + index : index;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** Messages that could not be handled, with the reason. */
export function deadLettersPage(letters: DeadLetter[]): Html {
  return page(
    'dead letters',
    html`<h1>Dead letters</h1><table><tr><th>when</th><th>topic</th><th>attempts</th><th>reason</th><th>data</th></tr>
${letters.map(
  (letter) => html`<tr><td>${new Date(letter.at).toISOString()}</td><td>${letter.topic}</td><td>${letter.attempts}</td>
<td>${letter.reason}</td><td class="hash">${Buffer.from(letter.data).toString('utf8').slice(0, 200)}</td></tr>`,
)}</table>`,
  );
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}
