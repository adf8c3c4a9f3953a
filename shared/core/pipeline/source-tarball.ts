import type { Repo } from '../model/types.ts';
import { blobKeys } from '../model/wire.ts';
import type { PipelineDeps } from './deps.ts';

/** Source tarballs remembered as uploaded; past this the memory starts over. */
const maxRememberedSources = 10_000;

/**
 * Commit tarballs in the blob store. They are content-addressed and never change: `ensure` remembers which are in
 * place, and lets concurrent callers for one commit share a single archive-and-upload.
 */
export function createSourceTarballs(deps: Pick<PipelineDeps, 'blobs' | 'source'>) {
  const uploads = new Map<string, Promise<void>>();

  /** Puts the commit's tarball in the blob store unless it is there; resolves with its key. */
  async function ensure(repo: Repo, commit: string): Promise<string> {
    const key = blobKeys.source(repo.name, commit);
    let upload = uploads.get(key);
    if (upload === undefined) {
      upload = (async () => {
        if (!(await deps.blobs.exists(key))) await deps.blobs.put(key, await deps.source.archive(repo, commit));
      })();
      upload.catch(() => uploads.delete(key));
      if (uploads.size >= maxRememberedSources) uploads.clear();
      uploads.set(key, upload);
    }
    await upload;
    return key;
  }

  /** The commit's tarball, from the blob store, or archived and stored there. */
  async function read(repo: Repo, commit: string): Promise<Uint8Array> {
    const key = blobKeys.source(repo.name, commit);
    const stored = await deps.blobs.get(key);
    if (stored !== undefined) return stored;
    const archived = await deps.source.archive(repo, commit);
    await deps.blobs.put(key, archived);
    return archived;
  }

  return { ensure, read };
}
