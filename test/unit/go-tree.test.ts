import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { unzipSync } from 'fflate';
import { zoneinfoZip } from '../../shared/cli/go-tree.ts';
import { main } from '../../shared/cli/main.ts';
import type { Io } from '../../shared/cli/io.ts';
import { pathExists } from '../../shared/path-exists.ts';
import { needsGo } from '../helpers/toolchain.ts';

const run = promisify(execFile);
const utc = '/usr/share/zoneinfo/UTC';
const needsTzdata = (await pathExists(utc)) ? false : `needs a zone file at ${utc} (apt-get install tzdata)`;

function io(cwd: string) {
  const out: string[] = [];
  const err: string[] = [];
  const value: Io = { cwd, stdout: (text) => out.push(text), stderr: (text) => err.push(text), interrupted: new Promise(() => {}) };
  return { io: value, out, err };
}

describe('hermetic go-tree', () => {
  let dir: string;
  let tree: string;
  let zones: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hermetic-go-tree-'));
    tree = join(dir, 'go-1.99');
    await mkdir(join(tree, 'src'), { recursive: true });
    await mkdir(join(tree, 'test'), { recursive: true });
    await writeFile(join(tree, 'src', 'make.bash'), '#!/bin/bash\necho making\n');
    await writeFile(join(tree, 'test', 'a.go'), 'package a\n');
    await writeFile(join(tree, 'VERSION'), 'go1.99.1\ntime 2026-01-01\n');
    zones = join(dir, 'zoneinfo');
    await mkdir(join(zones, 'Test'), { recursive: true });
    await mkdir(join(zones, 'posix', 'Test'), { recursive: true });
    await writeFile(join(zones, 'zone.tab'), '# not a zone\n');
    if (needsTzdata === false) {
      await copyFile(utc, join(zones, 'Test', 'Zone'));
      await copyFile(utc, join(zones, 'posix', 'Test', 'Zone'));
    }
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('commits the tree, its VERSION and a zoneinfo.zip once, and again only when the tree changes', { skip: needsTzdata }, async () => {
    const repo = join(dir, 'repo');
    const first = io(dir);
    assert.equal(await main(['go-tree', repo, '--from', tree, '--zoneinfo', zones, '--json'], first.io), 0);
    const made = JSON.parse(first.out.join('')) as { commit: string; version: string; created: boolean };
    assert.equal(made.version, 'go1.99.1');
    assert.equal(made.created, true);
    const files = (await run('git', ['-C', repo, 'ls-files'])).stdout.split('\n').filter(Boolean).sort();
    assert.deepEqual(files, ['VERSION', 'lib/time/zoneinfo.zip', 'src/make.bash', 'test/a.go']);
    assert.equal(await readFile(join(repo, 'VERSION'), 'utf8'), 'go1.99.1\n');

    const again = io(dir);
    assert.equal(await main(['go-tree', repo, '--from', tree, '--zoneinfo', zones, '--json'], again.io), 0);
    assert.equal((JSON.parse(again.out.join('')) as { commit: string }).commit, made.commit, 'an unchanged tree adds no commit');

    await writeFile(join(tree, 'test', 'b.go'), 'package a\n');
    const changed = io(dir);
    assert.equal(await main(['go-tree', repo, '--from', tree, '--zoneinfo', zones, '--json'], changed.io), 0);
    assert.notEqual((JSON.parse(changed.out.join('')) as { commit: string }).commit, made.commit);
  });

  it('says what is missing when the tree is not a Go tree, and exits 1', async () => {
    const run = io(dir);
    assert.equal(await main(['go-tree', join(dir, 'nothing'), '--from', dir], run.io), 1);
    assert.match(run.err.join('\n'), /is not a Go source tree \(no src\/make\.bash\)/);
  });

  it('makes a zoneinfo.zip of zone files only, the same bytes every time', { skip: needsTzdata }, async () => {
    const zip = await zoneinfoZip(zones);
    assert.deepEqual(zip, await zoneinfoZip(zones));
    assert.deepEqual(Object.keys(unzipSync(zip)), ['Test/Zone'], 'no tables, no posix/ or right/ copies');
    await assert.rejects(zoneinfoZip(join(dir, 'go-1.99')), /holds no zone files/);
  });

  it("makes a zoneinfo.zip Go's time package reads", { skip: needsGo || needsTzdata }, async () => {
    const zip = join(dir, 'zoneinfo.zip');
    await writeFile(zip, await zoneinfoZip(zones));
    const program = join(dir, 'tz.go');
    // Test/Zone exists only in the zip, so loading it proves Go read the zip.
    await writeFile(program, 'package main\n\nimport (\n\t"fmt"\n\t"time"\n)\n\nfunc main() {\n\t_, err := time.LoadLocation("Test/Zone")\n\tfmt.Println(err)\n}\n');
    const { stdout } = await run('go', ['run', program], { env: { ...process.env, ZONEINFO: zip, GOCACHE: join(dir, 'gocache'), GOFLAGS: '', GO111MODULE: 'off' } });
    assert.equal(stdout.trim(), '<nil>');
  });
});
