import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { programsNotOnPath } from '../../shared/adapters/local/programs-on-path.ts';
import { ensurePrerequisites, prerequisitesFor } from '../../shared/cli/prerequisites.ts';
import { parseConfig } from '../../shared/core/config/config.ts';
import { missingToolsReason } from '../../shared/core/pipeline/missing-tools.ts';

const config = (builders: string[]) =>
  parseConfig(
    {
      repos: [{ name: 'calc', url: '/nowhere/calc', builders }],
      builders: {
        sandboxed: { type: 'go-module', hostType: 'host' },
        contained: { type: 'go-module', hostType: 'linux-amd64' },
        'falls-back': { type: 'go-module', hostType: 'linux-amd64', fallbackHostType: 'host' },
        tree: { type: 'go-tree', hostType: 'host' },
        script: { type: 'command', hostType: 'host', command: 'make check' },
      },
    },
    'prerequisites-test.json',
  );

describe('what up needs of this machine', () => {
  it('needs git, and the tools of the builders that run in the process sandbox', async () => {
    const needs = await prerequisitesFor(config(['sandboxed', 'contained', 'tree', 'script']), 'auto');
    assert.deepEqual(
      needs.map((need) => [need.program, need.debianPackage]),
      [['git', 'git'], ['go', 'golang-go'], ['/usr/lib/go/bin/go', 'golang-go'], ['bash', 'bash'], ['sh', 'dash']],
    );
    assert.equal(needs.find((need) => need.program === 'go')?.neededFor, 'builder sandboxed, in the process sandbox');
    assert.equal(needs.find((need) => need.program === '/usr/lib/go/bin/go')?.neededFor, 'builder tree, in the process sandbox');
  });

  it('looks for the Go tree\'s bootstrap Go where the builder\'s GOROOT_BOOTSTRAP says', () => {
    const catalog = parseConfig({ builders: { tree: { type: 'go-tree', hostType: 'host', env: { GOROOT_BOOTSTRAP: '/opt/go1.22' } } } }, 'tree.json');
    assert.deepEqual(catalog.builders.get('tree')?.tools, ['/opt/go1.22/bin/go', 'bash']);
  });

  it('counts a builder that falls back to the sandbox when no container will run, saying why', async () => {
    const needs = await prerequisitesFor(config(['falls-back']), 'off');
    assert.deepEqual(
      needs.map((need) => [need.program, need.neededFor]),
      [['git', 'reading the repositories'], ['go', 'builder falls-back, in the process sandbox (containers are turned off (--no-docker))']],
    );
  });

  it('names what is missing, with its package and who needs it, and installs nothing when told not to', async () => {
    const lines: string[] = [];
    const missing = await ensurePrerequisites(
      [
        { program: 'git', debianPackage: 'git', neededFor: 'reading the repositories' },
        { program: 'no-such-tool-hermetic', debianPackage: 'hermetic-nothing', neededFor: 'builder x, in the process sandbox' },
      ],
      { install: false, onLine: (line) => lines.push(line) },
    );
    assert.deepEqual(missing.map((need) => need.program), ['no-such-tool-hermetic']);
    assert.deepEqual(lines, [
      [
        'hermetic: this machine lacks what the run needs; nothing was built:',
        '  no-such-tool-hermetic (Debian package hermetic-nothing): for builder x, in the process sandbox',
        'Run `apt-get install hermetic-nothing` and start again, or drop --no-install to let hermetic install them as root.',
      ].join('\n'),
    ]);
    assert.deepEqual(await ensurePrerequisites([{ program: 'git', debianPackage: 'git', neededFor: 'x' }], { install: false, onLine: (line) => lines.push(line) }), []);
  });
});

describe('programs on PATH', () => {
  it('looks a name up in each directory of PATH, and takes a path as it is', async () => {
    assert.deepEqual(await programsNotOnPath(['sh', '/bin/sh', '/no/such/bin/go', 'no-such-tool-hermetic'], process.env.PATH ?? ''), [
      '/no/such/bin/go',
      'no-such-tool-hermetic',
    ]);
    assert.deepEqual(await programsNotOnPath(['sh'], ''), ['sh'], 'an empty PATH finds nothing');
  });
});

describe('why a worker lacked a program', () => {
  it('on this machine: the packages to apt-get install; in an image: the recipe to add them to', () => {
    assert.equal(
      missingToolsReason(['/usr/lib/go/bin/go'], 'host'),
      '/usr/lib/go/bin/go is not installed on this machine, whose own tools the process sandbox (host type host) runs: apt-get install golang-go',
    );
    assert.equal(
      missingToolsReason(['go', 'make'], 'host'),
      'go, make are not installed on this machine, whose own tools the process sandbox (host type host) runs: apt-get install golang-go make',
    );
    assert.equal(
      missingToolsReason(['protoc'], 'host'),
      'protoc is not installed on this machine, whose own tools the process sandbox (host type host) runs: install protoc',
    );
    assert.equal(
      missingToolsReason(['gcc', 'protoc'], 'linux-amd64'),
      'gcc, protoc are not in the linux-amd64 worker image: add gcc, the package that has protoc to infra/env/linux-amd64/ and rebuild it (hermetic images build linux-amd64)',
    );
  });
});
