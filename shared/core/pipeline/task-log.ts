import { blobKeys } from '../model/wire.ts';
import type { BlobStore } from '../../ports/blobs.ts';

/** A task's log so far: its chunks in order, joined; undefined when the task has none yet. */
export async function logOf(blobs: BlobStore, taskId: string): Promise<{ text: Buffer; complete: boolean } | undefined> {
  const keys = await blobs.list(blobKeys.logPrefix(taskId));
  if (keys.length === 0) return undefined;
  const chunks = await Promise.all(keys.map((key) => blobs.get(key)));
  const complete = await blobs.exists(blobKeys.result(taskId));
  return { text: Buffer.concat(chunks.filter((chunk) => chunk !== undefined)), complete };
}
