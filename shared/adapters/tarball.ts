import { Header, Pack, ReadEntry } from 'tar';

/** One file, directory or link of a tarball being built in memory: its header fields and its contents. */
export interface TarballEntry {
  header: ConstructorParameters<typeof Header>[0] & { path: string };
  data: Buffer;
}

/** A gzipped tarball of `entries`, in their order, built in memory: tar's Pack writes each ReadEntry it is handed as is. */
export async function packTarball(entries: Iterable<TarballEntry>): Promise<Uint8Array> {
  const pack = new Pack({ gzip: true, portable: true });
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (chunk: Buffer) => chunks.push(chunk));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const { header, data } of entries) {
    const entry = new ReadEntry(new Header({ ...header, size: data.length }));
    entry.end(data);
    pack.add(entry);
  }
  pack.end();
  await done;
  return Buffer.concat(chunks);
}
