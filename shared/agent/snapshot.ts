import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { c as createTar, x as extractTar } from 'tar';

/**
 * Snapshots of a built tree: after the make step, the tree is pruned and packed into one gzipped tarball that every
 * shard unpacks, so `make.bash` runs once per build instead of once per shard.
 */

export interface PackOptions {
  /** The entries of the tree to pack, relative to it (default `['.']`, the whole tree); each must exist. */
  include?: readonly string[];
  /** Paths (relative to the tree, `/`-separated) to leave out, with everything under them. */
  exclude: readonly string[];
  /** gzip level: 1 packs fastest, 9 smallest. Snapshots are written once and read a few dozen times. */
  level?: number;
}

export interface PackResult {
  bytes: number;
  files: number;
  seconds: number;
}

/**
 * Packs `include` of the tree at `dir` into a gzipped tarball at `file`, leaving out `exclude`. File modes and
 * symlinks are kept; owners and times are not (a snapshot must unpack the same anywhere). Rejects when the tree
 * cannot be read.
 */
export async function packSnapshot(dir: string, file: string, options: PackOptions): Promise<PackResult> {
  const startedAt = performance.now();
  const excluded = options.exclude.map((path) => path.replace(/^\.?\/+|\/+$/g, ''));
  let files = 0;
  const tar = createTar(
    {
      cwd: dir,
      gzip: { level: options.level ?? 1 },
      portable: true,
      noMtime: true,
      filter: (path) => {
        const relative = path.replace(/^\.\//, '');
        const keep = !excluded.some((prefix) => relative === prefix || relative.startsWith(`${prefix}/`));
        if (keep) files++;
        return keep;
      },
    },
    [...(options.include ?? ['.'])],
  );
  await pipeline(tar, createWriteStream(file));
  return { bytes: (await stat(file)).size, files, seconds: (performance.now() - startedAt) / 1000 };
}

/**
 * Unpacks a snapshot made by packSnapshot into `dir`, which must exist. Nothing lands outside `dir` (no absolute
 * paths, no `..`, no link out); owners are not restored. Rejects on a corrupt or truncated snapshot, leaving a
 * partial tree in `dir` to be thrown away.
 */
export async function unpackSnapshot(file: string, dir: string): Promise<{ seconds: number }> {
  const startedAt = performance.now();
  await pipeline(createReadStream(file), extractTar({ cwd: dir, strict: true, preserveOwner: false }));
  return { seconds: (performance.now() - startedAt) / 1000 };
}
