import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { packSnapshot } from '../../shared/agent/snapshot.ts';
import { unpackTarball } from '../../shared/agent/unpack.ts';

function unpackSnapshot(file: string, dir: string) {
  return unpackTarball(createReadStream(file), dir, { maxBytes: 1 << 30, maxEntries: 100_000 });
}

async function listTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.map((entry) => relative(dir, join(entry.parentPath, entry.name))).sort();
}

describe('snapshots of a built tree', () => {
  let root: string;
  let tree: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'hermetic-snapshot-'));
    tree = join(root, 'tree');
    await mkdir(join(tree, 'bin'), { recursive: true });
    await mkdir(join(tree, 'pkg', 'obj', 'go-build'), { recursive: true });
    await mkdir(join(tree, 'pkg', 'tool'), { recursive: true });
    await mkdir(join(tree, 'src', 'fmt'), { recursive: true });
    await writeFile(join(tree, 'bin', 'go'), '#!/bin/sh\necho go\n');
    await chmod(join(tree, 'bin', 'go'), 0o755);
    await writeFile(join(tree, 'pkg', 'obj', 'go-build', 'scratch'), 'intermediate build output');
    await writeFile(join(tree, 'pkg', 'tool', 'compile'), Buffer.alloc(100_000, 7));
    await writeFile(join(tree, 'src', 'fmt', 'print.go'), 'package fmt\n');
    await writeFile(join(tree, 'VERSION'), 'go1.19.8');
    await symlink('../VERSION', join(tree, 'src', 'VERSION.link'));
  });
  after(async () => {
    // A failed unpack may still be closing files it had begun; retry until they are done.
    await rm(root, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  });

  it('packs the tree without the pruned paths and unpacks it the same elsewhere', async () => {
    const file = join(root, 'snapshot.tar.gz');
    const packed = await packSnapshot(tree, file, { exclude: ['pkg/obj', 'VERSION.missing'] });
    assert.ok(packed.bytes > 0 && packed.bytes < 100_000, `compressed: ${packed.bytes} bytes`);
    const contents = 'go1.19.8'.length + '#!/bin/sh\necho go\n'.length + 100_000 + 'package fmt\n'.length;
    assert.deepEqual([packed.files, packed.unpackedBytes], [11, contents], 'every entry counted, and the bytes of its files');
    const out = join(root, 'out');
    await mkdir(out);
    await unpackSnapshot(file, out);
    const expected = (await listTree(tree)).filter((path) => !path.startsWith('pkg/obj'));
    assert.deepEqual(await listTree(out), expected);
    assert.equal((await stat(join(out, 'bin', 'go'))).mode & 0o777, 0o755, 'modes are kept');
    assert.equal(await readlink(join(out, 'src', 'VERSION.link')), '../VERSION', 'symlinks are kept');
    assert.deepEqual(await readFile(join(out, 'pkg', 'tool', 'compile')), Buffer.alloc(100_000, 7));
  });

  it('packs the same tree to the same bytes, whenever it was built', async () => {
    const a = join(root, 'a.tar.gz');
    const b = join(root, 'b.tar.gz');
    await packSnapshot(tree, a, { exclude: ['pkg/obj'] });
    const later = new Date(Date.now() + 60_000);
    const { utimes } = await import('node:fs/promises');
    await utimes(join(tree, 'src', 'fmt', 'print.go'), later, later);
    await packSnapshot(tree, b, { exclude: ['pkg/obj'] });
    assert.deepEqual(await readFile(a), await readFile(b));
  });

  it('packs only the included entries, excluding by their full path', async () => {
    const file = join(root, 'included.tar.gz');
    await packSnapshot(tree, file, { include: ['bin', 'src'], exclude: ['src/fmt'] });
    const out = join(root, 'included-out');
    await mkdir(out);
    await unpackSnapshot(file, out);
    assert.deepEqual(await listTree(out), ['bin', 'bin/go', 'src', 'src/VERSION.link']);
    const missing = packSnapshot(tree, join(root, 'missing.tar.gz'), { include: ['no-such-entry'], exclude: [] });
    await assert.rejects(missing, /ENOENT/);
  });

  it('rejects a corrupt snapshot', async () => {
    const file = join(root, 'corrupt.tar.gz');
    await packSnapshot(tree, file, { exclude: [] });
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const out = join(root, 'corrupt-out');
    await mkdir(out);
    await assert.rejects(unpackSnapshot(file, out));
  });
});
