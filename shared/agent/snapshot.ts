import { createWriteStream, Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { c as createTar } from 'tar';

/**
 * Snapshots of a built tree: after the make step, the tree is pruned and packed into one gzipped tarball that every
 * shard unpacks (with unpackTarball), so `make.bash` runs once per build instead of once per shard.
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
  /** Entries packed: files, directories and links. */
  files: number;
  /** The bytes of file contents packed: what the snapshot takes on disk once unpacked. */
  unpackedBytes: number;
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
  let unpackedBytes = 0;
  const tar = createTar(
    {
      cwd: dir,
      gzip: { level: options.level ?? 1 },
      portable: true,
      noMtime: true,
      filter: (path, stat) => {
        const relative = path.replace(/^\.\//, '');
        const keep = !excluded.some((prefix) => relative === prefix || relative.startsWith(`${prefix}/`));
        if (keep) {
          files++;
          // Packing lstat()s the tree, so the filter sees fs.Stats.
          if (stat instanceof Stats && stat.isFile()) unpackedBytes += stat.size;
        }
        return keep;
      },
    },
    [...(options.include ?? ['.'])],
  );
  await pipeline(tar, createWriteStream(file));
  return { bytes: (await stat(file)).size, files, unpackedBytes, seconds: (performance.now() - startedAt) / 1000 };
}
