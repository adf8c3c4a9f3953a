import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { Header } from 'tar';
import { unpackTarball, UnpackLimitError } from '../../shared/agent/unpack.ts';

/**
 * A gzipped tarball of up to `count` files of `size` zero bytes, made only as fast as it is read: `made()` says how
 * many entries the reader pulled out of it.
 */
function lazyTarball(count: number, size: number): { stream: Readable; made(): number } {
  let made = 0;
  function* blocks(): Generator<Buffer> {
    const body = Buffer.alloc(size);
    for (; made < count; ) {
      made++;
      const header = Buffer.alloc(512);
      new Header({ path: `bomb/f${made}`, mode: 0o644, size, type: 'File', mtime: new Date(0) }).encode(header, 0);
      yield header;
      if (size > 0) yield Buffer.concat([body, Buffer.alloc((512 - (size % 512)) % 512)]);
    }
    yield Buffer.alloc(1024);
  }
  return { stream: Readable.from(blocks(), { objectMode: false }).pipe(createGzip({ level: 1 })), made: () => made };
}

describe('unpackTarball', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'hermetic-unpack-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('stops a gzip bomb at the first entry past the byte limit, leaving nothing of it behind', async () => {
    const dest = await mkdtemp(join(root, 'bytes-'));
    await mkdir(join(dest, 'home'));
    await writeFile(join(dest, 'home', 'kept'), 'was here before\n');
    // 1 GiB of zeros in 1 MiB files, stopped at 4 MiB.
    const bomb = lazyTarball(1024, 1 << 20);
    await assert.rejects(unpackTarball(bomb.stream, dest, { maxBytes: 4 << 20, maxEntries: 1000 }), (error: unknown) => {
      assert.ok(error instanceof UnpackLimitError, String(error));
      assert.equal(error.message, 'unpacks past its limit of 4194304 bytes (entry 5, "bomb/f5", takes it to 5242880)');
      return true;
    });
    assert.ok(bomb.made() < 256, `read ${bomb.made()} of 1024 entries before stopping`);
    assert.deepEqual(await readdir(dest), ['home'], 'what the archive added is gone; what was there stays');
    assert.deepEqual(await readdir(join(dest, 'home')), ['kept']);
  });

  it('stops a flood of tiny files at the entry limit', async () => {
    const dest = await mkdtemp(join(root, 'entries-'));
    const flood = lazyTarball(1_000_000, 0);
    await assert.rejects(unpackTarball(flood.stream, dest, { maxBytes: 1 << 30, maxEntries: 1000 }), (error: unknown) => {
      assert.ok(error instanceof UnpackLimitError, String(error));
      assert.equal(error.message, 'holds more than its limit of 1000 entries');
      return true;
    });
    assert.ok(flood.made() < 100_000, `read ${flood.made()} of 1,000,000 entries before stopping`);
    assert.deepEqual(await readdir(dest), []);
  });

  it('unpacks a tarball within its limits and says what it held', async () => {
    const dest = await mkdtemp(join(root, 'fits-'));
    const fits = lazyTarball(4, 1000);
    assert.deepEqual(await unpackTarball(fits.stream, dest, { maxBytes: 4000, maxEntries: 4 }), { bytes: 4000, entries: 4 });
    assert.deepEqual((await readdir(join(dest, 'bomb'))).sort(), ['f1', 'f2', 'f3', 'f4']);
  });
});
