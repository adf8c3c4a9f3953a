import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../shared/core/config/config.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { startLocalRuntime, type LocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { createTestRepo } from '../helpers/git-repo.ts';
import { processesWithEnv } from '../helpers/processes.ts';
import { needsGo } from '../helpers/toolchain.ts';


const goModule = {
  'go.mod': 'module example.com/calc\n\ngo 1.19\n',
  'calc.go': 'package calc\n\n// Add adds.\nfunc Add(a, b int) int { return a + b }\n',
  'calc_test.go':
    'package calc\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 2) != 4 {\n\t\tt.Fatal("2+2 != 4")\n\t}\n}\n',
  'check.sh': '#!/bin/sh\necho "checking $GO_BUILDER_NAME attempt $HERMETIC_ATTEMPT"\ntest -f calc.go\n',
};

interface GridBuild {
  status: string;
  logUrl: string;
  buildUrl: string;
}
interface GridJson {
  grids: Array<{ repo: string; builders: string[]; commits: Array<{ hash: string; subject: string; builds: Record<string, GridBuild> }> }>;
}

describe('the local stack, end to end, on a real git repo', { skip: needsGo }, () => {
  let dir: string;
  let runtime: LocalRuntime;
  const commits: Record<string, string> = {};

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hermetic-e2e-'));
    const repo = await createTestRepo(join(dir, 'calc'));
    commits['good'] = await repo.commit(goModule, 'calc: add Add', { executable: ['check.sh'] });
    commits['broken-go'] = await repo.commit(
      { 'calc.go': 'package calc\n\n// Add adds.\nfunc Add(a, b int) int { return a - b }\n' },
      'calc: break Add',
    );
    commits['broken-sh'] = await repo.commit({ 'calc.go': goModule['calc.go'], 'check.sh': '#!/bin/sh\necho "no calc here"\nexit 3\n' }, 'check: fail on purpose');
    commits['noisy'] = await repo.commit({ 'check.sh': '#!/bin/sh\nyes "a line of noise to fill the log" | head -c 200000\n' }, 'check: print a lot');
    const config = parseConfig(
      {
        repos: [{ name: 'calc', url: repo.path, branches: ['main'], builders: ['go', 'sh'] }],
        builders: {
          go: { type: 'go-module', timeoutSeconds: 300 },
          sh: { type: 'command', command: './check.sh', maxLogBytes: 8192, timeoutSeconds: 60 },
        },
      },
      'e2e-config.json',
    );
    runtime = await startLocalRuntime({ dataDir: join(dir, 'data'), catalog: config, logger: silentLogger, pollIntervalMs: 0, port: 0 });
    const poll = await runtime.pollNow();
    assert.deepEqual(poll.errors, []);
    assert.equal(poll.requested.length, 8, '4 commits x 2 builders');
    await runtime.waitForBuilds(poll.requested.map((build) => build.buildId), 240_000);
  });

  after(async () => {
    await runtime?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('shows each verdict in the grid, newest commit first', async () => {
    const grid = (await (await fetch(`${runtime.url}/api/grid`)).json()) as GridJson;
    const [calc] = grid.grids;
    assert.ok(calc);
    assert.deepEqual(calc.builders, ['go', 'sh']);
    assert.deepEqual(calc.commits.map((commit) => commit.hash), [commits['noisy'], commits['broken-sh'], commits['broken-go'], commits['good']]);
    const verdicts = Object.fromEntries(
      calc.commits.map((commit) => [commit.subject, `${commit.builds['go']?.status}/${commit.builds['sh']?.status}`]),
    );
    assert.deepEqual(verdicts, {
      'calc: add Add': 'passed/passed',
      'calc: break Add': 'failed/passed',
      'check: fail on purpose': 'passed/failed',
      'check: print a lot': 'passed/passed',
    });
  });

  it('serves each build log, with the steps and their output', async () => {
    const grid = (await (await fetch(`${runtime.url}/api/grid`)).json()) as GridJson;
    const byHash = new Map(grid.grids[0]?.commits.map((commit) => [commit.hash, commit.builds]));
    const brokenGo = await (await fetch(byHash.get(commits['broken-go'] ?? '')?.['go']?.logUrl ?? '')).text();
    assert.match(brokenGo, /go vet \.\/\.\.\./);
    assert.match(brokenGo, /--- FAIL: TestAdd/);
    const brokenSh = await (await fetch(byHash.get(commits['broken-sh'] ?? '')?.['sh']?.logUrl ?? '')).text();
    assert.match(brokenSh, /no calc here/);
    const good = await (await fetch(byHash.get(commits['good'] ?? '')?.['sh']?.logUrl ?? '')).text();
    assert.match(good, /checking sh attempt 1/, 'GO_BUILDER_NAME and the attempt reach the build');
  });

  it('cuts the middle of a log past the builder\'s maxLogBytes, says so, and keeps its end', async () => {
    const grid = (await (await fetch(`${runtime.url}/api/grid`)).json()) as GridJson;
    const noisy = grid.grids[0]?.commits.find((commit) => commit.hash === commits['noisy'])?.builds['sh'];
    assert.ok(noisy);
    const log = await (await fetch(noisy.logUrl)).text();
    assert.ok(Buffer.byteLength(log) <= 8192, `log is ${Buffer.byteLength(log)} bytes`);
    assert.match(log, /\n\[hermetic: log cut at \d+ bytes; \d+ more bytes dropped; the last \d+ bytes follow\]\na line of noise/);
    assert.match(log, /a line of noise to fill the log\n:: sh -c \.\/check\.sh exited 0 after [\d.]+s\n$/, 'the exit line is kept');
    const build = (await (await fetch(noisy.buildUrl.replace('/build/', '/api/builds/'))).json()) as { tasks: Array<{ logTruncated: boolean }> };
    assert.equal(build.tasks[0]?.logTruncated, true);
  });

  it('renders the grid and the build pages as HTML', async () => {
    const page = await (await fetch(`${runtime.url}/`)).text();
    assert.match(page, /calc: break Add/);
    assert.match(page, /class="s-failed"/);
    const grid = (await (await fetch(`${runtime.url}/api/grid`)).json()) as GridJson;
    const buildUrl = grid.grids[0]?.commits[0]?.builds['go']?.buildUrl ?? '';
    const buildPage = await fetch(buildUrl);
    assert.equal(buildPage.status, 200);
    assert.match(await buildPage.text(), /go test \.\/\.\.\./);
  });

  it('leaves no worker process and no dead letter behind', async () => {
    assert.deepEqual(await processesWithEnv('HOME', join(dir, 'data')), []);
    assert.deepEqual(await runtime.queue.list(), []);
  });
});
