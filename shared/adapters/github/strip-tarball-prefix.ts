import { gunzipSync } from 'node:zlib';
import { Parser } from 'tar';
import { packTarball, type TarballEntry } from '../tarball.ts';

interface Entry {
  path: string;
  type: 'File' | 'Directory' | 'SymbolicLink';
  mode: number;
  mtime: Date | undefined;
  linkpath: string | undefined;
  data: Buffer;
}

const KEPT_TYPES = new Set(['File', 'Directory', 'SymbolicLink']);

/**
 * A gzipped tarball like GitHub's (every path under one `owner-repo-sha/` directory) re-packed with that directory
 * taken off, modes, times and symbolic links kept. Rejects a malformed tarball, and one with entries outside a
 * single top directory or of a kind git does not make (hard links, devices).
 */
export async function stripTarballPrefix(tarball: Uint8Array): Promise<Uint8Array> {
  const entries = await readEntries(gunzipSync(tarball));
  const prefix = /^[^/]+\//.exec(entries[0]?.path ?? '')?.[0];
  const repacked: TarballEntry[] = [];
  for (const entry of entries) {
    if (prefix === undefined || !entry.path.startsWith(prefix)) throw new Error(`tarball entry ${JSON.stringify(entry.path)} is not under one top directory`);
    const path = entry.path.slice(prefix.length);
    if (path === '') continue;
    repacked.push({
      header: { path, type: entry.type, mode: entry.mode, ...(entry.mtime === undefined ? {} : { mtime: entry.mtime }), ...(entry.linkpath === undefined ? {} : { linkpath: entry.linkpath }) },
      data: entry.data,
    });
  }
  return packTarball(repacked);
}

async function readEntries(plain: Buffer): Promise<Entry[]> {
  const entries: Entry[] = [];
  const pending: Promise<void>[] = [];
  const odd: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry) => {
        if (!KEPT_TYPES.has(entry.type)) {
          odd.push(`${entry.type} ${entry.path}`);
          entry.resume();
          return;
        }
        const kept: Entry = { path: entry.path, type: entry.type as Entry['type'], mode: entry.mode ?? 0o644, mtime: entry.mtime, linkpath: entry.linkpath, data: Buffer.alloc(0) };
        entries.push(kept);
        pending.push(entry.concat().then((data) => void (kept.data = data)));
      },
    });
    parser.on('error', reject);
    parser.on('end', () => resolve());
    parser.end(plain);
  });
  await Promise.all(pending);
  if (odd.length > 0) throw new Error(`tarball has entries git does not make: ${odd.slice(0, 5).join(', ')}`);
  return entries;
}
