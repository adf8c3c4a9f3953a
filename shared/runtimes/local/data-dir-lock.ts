import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tryFileLock, type HeldLock } from '../../file-lock.ts';

/**
 * Takes the data directory for this process, so two runtimes never share one database and worker tree. The
 * operating system frees it when this process dies (see tryFileLock). Throws, naming the holder, when it is held.
 */
export async function lockDataDir(dataDir: string): Promise<HeldLock> {
  await mkdir(dataDir, { recursive: true });
  const attempt = await tryFileLock(join(dataDir, 'lock'));
  if ('held' in attempt) return attempt.held;
  const who = attempt.holder === undefined ? 'another process' : `pid ${attempt.holder}`;
  throw new Error(`another hermetic (${who}) is using the data directory ${dataDir}; stop it or use --data`);
}
