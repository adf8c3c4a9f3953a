import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { PipelineHarness } from './pipeline-harness.ts';
import { listenForTests } from '../fakes/http.ts';

/** One GET of the harness's dashboard over a real `node:http` server on a free port, closed after; any status. */
export async function fetchDashboard(h: PipelineHarness, path: string): Promise<{ status: number; type: string; body: string; headers: Headers }> {
  const server = createServer((req, res) => void h.functions.dashboard(req, res));
  const port = await listenForTests(server);
  try {
    const response = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: response.status, type: response.headers.get('content-type') ?? '', body: await response.text(), headers: response.headers };
  } finally {
    server.close();
  }
}

/** The body of the harness's dashboard page at `path`, which must answer 200 (and be of content type `type`, if given). */
export async function dashboardBody(h: PipelineHarness, path: string, type?: string): Promise<string> {
  const response = await fetchDashboard(h, path);
  assert.equal(response.status, 200, response.body);
  if (type !== undefined) assert.equal(response.type, type);
  return response.body;
}
