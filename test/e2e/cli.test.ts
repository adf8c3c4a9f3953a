import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { processesWithEnv } from '../helpers/processes.ts';
import { needsGo } from '../helpers/toolchain.ts';

const bin = fileURLToPath(new URL('../../bin/hermetic.js', import.meta.url));


interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `hermetic ARGS` with this test's Node; `onStderr` may send signals as output arrives. */
function hermetic(
  args: string[],
  cwd: string,
  onStderr?: (text: string, child: ReturnType<typeof spawn>) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      onStderr?.(stderr, child);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('hermetic CLI', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hermetic-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints help for every command and exits 0', async () => {
    for (const args of [['--help'], ['up', '--help']]) {
      const run = await hermetic(args, dir);
      assert.equal(run.code, 0);
      assert.match(run.stdout, /Usage: hermetic/);
      assert.equal(run.stderr, '');
    }
  });

  it('rejects unknown commands and flags with exit 2', async () => {
    assert.equal((await hermetic(['frobnicate'], dir)).code, 2);
    const run = await hermetic(['up', '--bogus'], dir);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--bogus/);
  });

  it('names the file, the field and what was expected in a config error', async () => {
    const file = join(dir, 'bad.config.json');
    await writeFile(file, JSON.stringify({ builders: { local: { type: 'go-module', timeoutSeconds: 'soon' } } }));
    const run = await hermetic(['up', '--once', '--config', file, '--data', join(dir, 'bad-data')], dir);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /bad\.config\.json: builders\.local\.timeoutSeconds: .*expected number/i);
  });

  it('refuses a branch with shell metacharacters before running anything', async () => {
    const run = await hermetic(['up', '--once', '--repo', dir, '--branch', 'main;touch PWNED', '--data', join(dir, 'data-x')], dir);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--branch "main;touch PWNED": expected a branch name/);
  });

  it('stops before building, naming the Debian packages, on a machine that lacks git and go', async () => {
    // A PATH with Node alone, as on a fresh machine; --no-install, so nothing is installed here.
    const data = join(dir, 'lacking');
    const run = await hermetic(['up', '--once', '--no-docker', '--no-install', '--data', data], dir, undefined, { PATH: dirname(process.execPath) });
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /this machine lacks what the run needs; nothing was built:\n {2}git \(Debian package git\): for reading the repositories\n {2}go \(Debian package golang-go\): for builder local, in the process sandbox \(containers are turned off \(--no-docker\)\)\n/);
    assert.match(run.stderr, /Run `apt-get install git golang-go` and start again, or drop --no-install/);
    assert.ok(!existsSync(join(data, 'example')), 'no example repository was made');
  });

  it('builds the example repository once and prints a JSON summary on stdout', { skip: needsGo }, async () => {
    const run = await hermetic(['up', '--once', '--json', '--port', '0', '--data', join(dir, 'data')], dir);
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(run.stdout) as Array<{ repo: string; commit: string; builder: string; status: string; logUrl: string }>;
    assert.deepEqual(
      summary.map((build) => [build.repo, build.builder, build.status]),
      [
        ['example', 'local', 'passed'],
        ['example', 'local', 'failed'],
        ['example', 'local', 'passed'],
      ],
    );
    for (const build of summary) {
      assert.match(build.commit, /^[0-9a-f]{40}$/);
      assert.match(build.logUrl, /^http:\/\/127\.0\.0\.1:\d+\/log\/[0-9a-f]{24}$/);
    }
    assert.match(run.stderr, /dashboard at http:\/\/127\.0\.0\.1:\d+\//);
    assert.match(run.stderr, /✗ failed/);

    const again = await hermetic(['up', '--once', '--json', '--port', '0', '--data', join(dir, 'data')], dir);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(JSON.parse(again.stdout), [], 'nothing new on the second run');
  });

  it('stops cleanly on Ctrl-C with no worker left behind', async () => {
    const repo = join(dir, 'slow');
    execFileSync('git', ['init', '--quiet', '--initial-branch=main', repo]);
    await writeFile(join(repo, 'slow.sh'), '#!/bin/sh\necho started\nsleep 600 &\nsleep 600\n', { mode: 0o755 });
    execFileSync('git', ['-C', repo, 'add', '.']);
    execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-m', 'slow']);
    const config = join(dir, 'slow.config.json');
    await writeFile(config, JSON.stringify({ builders: { slow: { type: 'command', command: './slow.sh' } } }));
    let sent = false;
    const run = await hermetic(['up', '--config', config, '--repo', repo, '--builder', 'slow', '--port', '0', '--data', join(dir, 'slow-data')], dir, (stderr, child) => {
      if (!sent && /▶ started/.test(stderr)) {
        sent = true;
        // Give the agent a moment to start its step, so there is something to clean up.
        setTimeout(() => child.kill('SIGINT'), 1500);
      }
    });
    assert.ok(sent, run.stderr);
    assert.equal(run.code, 130, run.stderr);
    assert.deepEqual(await processesWithEnv('HOME', join(dir, 'slow-data')), [], 'no process of this run is left');
  });
});
