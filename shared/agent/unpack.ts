import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { x as extractTar, type ReadEntry } from 'tar';

/** How much an unpacked tarball may hold: bytes of file contents, and entries (files, directories, links). */
export interface UnpackLimits {
  maxBytes: number;
  maxEntries: number;
}

/** A tarball that would unpack past one of its limits; its message ("unpacks past its limit of N bytes (...)") names the limit and the figure. */
export class UnpackLimitError extends Error {
  override name = 'UnpackLimitError';
}

/**
 * Unpacks the gzipped tarball `input` into `dest`, which must exist. tar keeps every entry inside `dest`: absolute
 * paths are made relative, and `..` entries, escaping links and writes through links are skipped with a warning.
 * Owners are not restored. Each entry is weighed by its header before a byte of it is written, and the first one
 * that would take the tree past `limits` stops the unpack there (UnpackLimitError): a gzip bomb or a million tiny
 * files costs the disk no more than the limits allow. On any failure (that, a download or gzip error, a damaged
 * archive) the top-level entries this unpack added to `dest` are removed once tar has closed the files it had begun,
 * so no partial tree is left; what was already in `dest` stays, with whatever the archive wrote into it.
 */
export async function unpackTarball(
  input: Readable,
  dest: string,
  limits: UnpackLimits,
  warn: (message: string) => void = () => undefined,
): Promise<{ bytes: number; entries: number }> {
  const existing = new Set(await readdir(dest));
  const added = new Set<string>();
  let bytes = 0;
  let entries = 0;
  let failure: Error | undefined;

  const gunzip = createGunzip();
  const unpack = extractTar({
    cwd: dest,
    preserveOwner: false,
    onwarn: (_code, message, data) => warn(entryPath(data) === undefined ? message : `${entryPath(data)}: ${message}`),
    filter: (path, entry) => {
      if (failure !== undefined) return false;
      entries += 1;
      bytes += (entry as ReadEntry).size;
      if (entries > limits.maxEntries) {
        stop(new UnpackLimitError(`holds more than its limit of ${limits.maxEntries} entries`));
        return false;
      }
      if (bytes > limits.maxBytes) {
        stop(new UnpackLimitError(`unpacks past its limit of ${limits.maxBytes} bytes (entry ${entries}, ${JSON.stringify(path)}, takes it to ${bytes})`));
        return false;
      }
      const top = path.replace(/^(\.?\/+)+/, '').split('/')[0] ?? '';
      if (top !== '' && top !== '.' && top !== '..' && !existing.has(top)) added.add(top);
      return true;
    },
  });

  // Stops reading and lets tar finish the entries it has begun, so that its 'close' means no file is still open.
  function stop(error: Error): void {
    if (failure !== undefined) return;
    failure = error;
    input.unpipe(gunzip);
    gunzip.unpipe(unpack);
    input.destroy();
    gunzip.destroy();
    // Not from inside tar's own callback: it is still parsing the chunk that held this entry.
    setImmediate(() => unpack.end());
  }

  await new Promise<void>((resolve) => {
    input.on('error', (error) => stop(new Error(`download failed: ${error.message}`, { cause: error })));
    gunzip.on('error', (error) => stop(new Error(`extract failed: ${error.message}`, { cause: error })));
    // After a stop, tar reports the input it was cut off from as truncated; the stop's reason is the one that counts.
    unpack.on('error', (error: Error) => {
      failure ??= new Error(`extract failed: ${error.message}`, { cause: error });
    });
    unpack.on('close', () => resolve());
    input.pipe(gunzip).pipe(unpack);
  });
  if (failure !== undefined) {
    await Promise.all([...added].map((top) => rm(join(dest, top), { recursive: true, force: true })));
    throw failure;
  }
  return { bytes, entries };
}

/** The archive path a tar warning is about, as it was in the archive. */
function entryPath(data: Record<string, unknown>): string | undefined {
  if (typeof data.path === 'string') return data.path;
  const entry = data.entry;
  if (typeof entry !== 'object' || entry === null || !('path' in entry)) return undefined;
  return typeof entry.path === 'string' ? entry.path : undefined;
}
