import { statfs } from 'node:fs/promises';

/** What a file system had left when measured: space for unprivileged writers, and files (inodes). */
export interface DiskSpace {
  /** The path whose file system was measured. */
  path: string;
  freeBytes: number;
  totalBytes: number;
  freeFiles: number;
  /** 0 where the file system has no fixed number of files (btrfs, for one). */
  totalFiles: number;
}

/**
 * Under this much space a file system counts as full. A write that fails for want of space leaves less than a block
 * or two; a megabyte of slack also covers other writers freeing a little meanwhile, and is too little for any
 * build to have been meant to run in.
 */
const fullBelowBytes = 1 << 20;

/** What the file system holding `path` has left; undefined when it cannot be measured (the path is gone). */
export async function measureDiskSpace(path: string): Promise<DiskSpace | undefined> {
  try {
    const stats = await statfs(path);
    return {
      path,
      freeBytes: stats.bavail * stats.bsize,
      totalBytes: stats.blocks * stats.bsize,
      freeFiles: stats.ffree,
      totalFiles: stats.files,
    };
  } catch {
    return undefined;
  }
}

/** Whether a write there would fail for want of space or of a file (ENOSPC). */
export function isDiskFull(space: DiskSpace): boolean {
  return space.freeBytes < fullBelowBytes || (space.totalFiles > 0 && space.freeFiles === 0);
}

/** "12 KiB free of 64 MiB on the file system of PATH", naming the files instead when those ran out. */
export function describeDiskSpace(space: DiskSpace): string {
  const what =
    space.totalFiles > 0 && space.freeFiles === 0 && space.freeBytes >= fullBelowBytes
      ? `no file left of ${space.totalFiles} (${formatBytes(space.freeBytes)} free)`
      : `${formatBytes(space.freeBytes)} free of ${formatBytes(space.totalBytes)}`;
  return `${what} on the file system of ${space.path}`;
}

function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}
