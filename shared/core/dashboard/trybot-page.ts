import type { GitHubRepo, Repo } from '../model/types.ts';
import { html, type Html } from './html.ts';
import { modeText, page } from './pages.ts';
import type { TryDetail } from './queries.ts';

/** A pull request's page on GitHub. */
export function pullRequestUrl(github: GitHubRepo, number: number): string {
  return `https://github.com/${github.owner}/${github.name}/pull/${number}`;
}

/**
 * Trybot requests, newest first: what was asked and by whom, where each stands, and each accepted one's builds.
 * Requests waiting for approval stand out, with why and how a trusted person approves them.
 */
export function trybotsPage(rows: readonly TryDetail[], repos: readonly Repo[]): Html {
  const waiting = rows.filter((row) => row.run.status === 'waiting-approval').length;
  const github = new Map(repos.flatMap((repo) => (repo.github === undefined ? [] : [[repo.name, repo.github] as const])));
  return page(
    'hermetic trybots',
    html`<h1>Trybots</h1>
${waiting === 0 ? '' : html`<p class="waiting"><strong>${waiting} waiting for approval</strong></p>`}
${
  rows.length === 0
    ? html`<p class="muted">No trybot requests yet.</p>`
    : html`<table><tr><th>when</th><th>repo</th><th>pull request</th><th>commit</th><th>mode</th><th>asked by</th><th>status</th><th>builds</th></tr>
${rows.map((row) => tryRow(row, github.get(row.run.repo)))}</table>`
}`,
  );
}

function tryRow({ run, builds }: TryDetail, github: GitHubRepo | undefined): Html {
  const pull = run.pullRequest;
  return html`<tr id="try-${run.id}"${run.status === 'waiting-approval' ? html` class="waiting"` : ''}><td class="muted">${new Date(run.createdAt).toISOString().slice(0, 16).replace('T', ' ')}</td>
<td>${run.repo}</td>
<td>${pull === undefined ? '' : github === undefined ? `#${pull}` : html`<a href="${pullRequestUrl(github, pull)}">#${pull}</a>`}</td>
<td class="hash" title="${run.commit}">${run.commit.slice(0, 12)}</td>
<td>${modeText(run.mode)}</td>
<td>${run.requesters.join(', ')}</td>
<td>${statusCell(run)}</td>
<td>${builds.map(
    (entry) => html`<div>${entry.builder}: ${
      entry.build === undefined
        ? html`<span class="muted">gone</span>`
        : html`<a class="s-${entry.build.status}" href="/build/${entry.buildId}">${entry.build.status}</a>${
            entry.reused ? html` <span class="muted">reused: the verdict of build ${entry.buildId.slice(0, 8)} of ${entry.build.commit.slice(0, 12)}, the same tree</span>` : ''
          }`
    }</div>`,
  )}</td></tr>`;
}

function statusCell(run: TryDetail['run']): Html {
  switch (run.status) {
    case 'waiting-approval':
      return html`<strong>waiting for approval</strong><div>${run.reason ?? ''}</div>
<div class="muted">To approve: a trusted person comments <code>/try</code> on the pull request, or runs <code>hermetic try</code> as themselves.</div>`;
    case 'accepted':
      return html`accepted by ${run.acceptedBy ?? '?'}`;
    case 'rejected':
      return html`<span class="err">rejected: ${run.reason ?? 'no reason recorded'}</span>`;
  }
}
