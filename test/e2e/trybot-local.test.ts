import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { main } from '../../shared/cli/main.ts';
import { loadConfig } from '../../shared/core/config/config.ts';
import { collections } from '../../shared/ports/state.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { startLocalRuntime, type LocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { createTestRepo, type TestRepo } from '../helpers/git-repo.ts';

/** A request from the CLI, in-process, against the running runtime: its exit code and what it printed. */
async function tryFromCli(args: string[], cwd: string, interrupted: Promise<void> = new Promise(() => {})): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(['try', ...args], {
    cwd,
    stdout: (text) => (stdout += `${text}\n`),
    stderr: (text) => (stderr += `${text}\n`),
    interrupted,
  });
  return { code, stdout, stderr };
}

describe('trybots on the embedded runtime, from `hermetic try`', { timeout: 300_000 }, () => {
  let dir: string;
  let repo: TestRepo;
  let runtime: LocalRuntime;
  let configFile: string;
  const secret = 'ghp_this-must-never-reach-a-worker';
  const previousToken = process.env['GITHUB_TOKEN'];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hermetic-try-'));
    repo = await createTestRepo(join(dir, 'upstream'));
    await repo.commit({ 'test.sh': 'echo main is fine\n' }, 'main');
    configFile = join(dir, 'config.json');
    await writeFile(
      configFile,
      JSON.stringify({
        repos: [{ name: 'demo', url: repo.path, builders: ['check'] }],
        trybots: { trusted: { users: ['rsc'] }, maxWaitingPerRequester: 2 },
        builders: { check: { type: 'command', command: 'sh ./test.sh', timeoutSeconds: 60 } },
      }),
    );
    // A credential in the runtime's environment, as a deployment with GitHub access has.
    process.env['GITHUB_TOKEN'] = secret;
    runtime = await startLocalRuntime({ dataDir: join(dir, 'data'), catalog: await loadConfig(configFile), logger: silentLogger, pollIntervalMs: 0, containers: 'off' });
  });
  after(async () => {
    await runtime?.stop();
    if (previousToken === undefined) delete process.env['GITHUB_TOKEN'];
    else process.env['GITHUB_TOKEN'] = previousToken;
    await rm(dir, { recursive: true, force: true });
  });

  /** A change on a branch nobody watches, as a pull request's head is. */
  async function change(branch: string, files: Record<string, string>): Promise<string> {
    await repo.git('checkout', '--quiet', '-B', branch, 'main');
    const commit = await repo.commit(files, `change on ${branch}`);
    await repo.git('checkout', '--quiet', 'main');
    return commit;
  }

  const flags = (commit: string, branch: string, as: string) => ['--repo', 'demo', '--commit', commit, '--ref', branch, '--as', as, '--config', configFile, '--data', join(dir, 'data')];

  it('builds a trusted request and exits 0 for a pass, 1 for a failure', async () => {
    const good = await change('good', { 'test.sh': 'echo fine\n' });
    const passed = await tryFromCli([...flags(good, 'good', 'rsc'), '--wait', '--json'], dir);
    assert.equal(passed.code, 0, passed.stderr);
    const report = JSON.parse(passed.stdout) as { status: string; builds: Array<{ status: string; builder: string; commit: string }> };
    assert.equal(report.status, 'accepted');
    assert.deepEqual(report.builds.map((build) => [build.builder, build.status, build.commit]), [['check', 'passed', good]]);

    const bad = await change('bad', { 'test.sh': 'echo broken; exit 1\n' });
    const failed = await tryFromCli([...flags(bad, 'bad', 'rsc'), '--wait'], dir);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stdout, /^failed +check/m);
  });

  it('runs the trusted config, not one a change carries, and the change sees no credential', async () => {
    const hostile = await change('hostile', {
      // A fork's edits: its own builder config, and a test script that looks for secrets.
      'hermetic.config.json': JSON.stringify({ trybots: { trusted: { users: ['mallory'] } }, builders: { check: { type: 'command', command: 'curl evil', network: true } } }),
      'test.sh': 'echo "token=${GITHUB_TOKEN:-none}"; env | grep -c ghp_ || true\n',
    });
    const run = await tryFromCli([...flags(hostile, 'hostile', 'rsc'), '--wait', '--json'], dir);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as { builds: Array<{ logUrl: string }> };
    const log = await (await fetch(`${runtime.url}${report.builds[0]?.logUrl ?? ''}`)).text();
    assert.match(log, /sh \.\/test\.sh/, 'the trusted command ran');
    assert.match(log, /token=none/);
    assert.doesNotMatch(log, new RegExp(secret));
    assert.doesNotMatch(log, /curl evil/);
  });

  it('an untrusted request builds nothing and exits 3 until a trusted person asks for that exact commit', async () => {
    const first = await change('first', { 'test.sh': 'echo first\n' });
    const waiting = await tryFromCli([...flags(first, 'first', 'mallory'), '--wait'], dir);
    assert.equal(waiting.code, 3, waiting.stderr);
    assert.match(waiting.stderr, /waiting-approval/);
    const buildsOf = async (commit: string) => (await runtime.deps.state.query(collections.builds)).filter((build) => build.commit === commit);
    assert.deepEqual(await buildsOf(first), []);

    const approval = await tryFromCli([...flags(first, 'first', 'rsc'), '--wait'], dir);
    assert.equal(approval.code, 0, approval.stderr);
    const approved = (await runtime.deps.state.query(collections.trybots)).find((run) => run.commit === first && run.requestedBy === 'mallory');
    assert.equal(approved?.status, 'accepted');
    assert.equal(approved?.acceptedBy, 'rsc');

    const next = await change('first', { 'test.sh': 'echo pushed again\n' });
    const again = await tryFromCli([...flags(next, 'first', 'mallory'), '--wait'], dir);
    assert.equal(again.code, 3, 'the approval does not carry to the next commit');
    assert.deepEqual(await buildsOf(next), []);
  });

  it('Ctrl-C stops --wait with exit 130, leaving the request queued for the pipeline', async () => {
    const idle = join(dir, 'idle');
    await (await startLocalRuntime({ dataDir: idle, catalog: await loadConfig(configFile), logger: silentLogger, pollIntervalMs: 0, containers: 'off' })).stop();
    const commit = await change('queued', { 'test.sh': 'echo later\n' });
    const started = Date.now();
    const run = await tryFromCli([...flags(commit, 'queued', 'rsc').slice(0, -1), idle, '--wait'], dir, new Promise((resolve) => setTimeout(resolve, 500)));
    assert.equal(run.code, 130, run.stderr);
    assert.ok(Date.now() - started < 5000);
    assert.match(run.stderr, /waiting for the pipeline to take the request/);
    assert.match(run.stderr, /stopped waiting; trybot request [0-9a-f]{24} goes on/);
  });

  it('refuses bad requests at the command line: unknown builders, injected refs, lookalike logins', async () => {
    const commit = 'c'.repeat(40);
    const unknown = await tryFromCli([...flags(commit, 'x', 'rsc'), '--builder', 'nope'], dir);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown builder "nope"; expected one of: check/);
    const injected = await tryFromCli([...flags(commit, 'x', 'rsc'), '--ref=--upload-pack=touch pwned'], dir);
    assert.equal(injected.code, 2);
    assert.match(injected.stderr, /ref: expected a ref name/);
    const lookalike = await tryFromCli(flags(commit, 'x', 'rs\u0441'), dir);
    assert.equal(lookalike.code, 2);
    assert.match(lookalike.stderr, /requester: expected a GitHub login/);
  });
});
