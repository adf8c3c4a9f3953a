import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isProcessAlive } from '../process-alive.ts';

export interface BuildLockOptions {
  /** Called once if another process holds the lock, with its pid. */
  onWait?: (pid: number) => void;
  signal?: AbortSignal;
  pollMs?: number;
}

/**
 * Runs `work` holding the lock `<dir>/<key>.lock`, so two processes (a test run and `hermetic up`, say) never build
 * the same image at once: the second waits, then finds the tag made. A lock whose process is gone is taken over.
 * Rejects when `signal` aborts while waiting, or with whatever `work` throws.
 */
export async function withBuildLock<T>(dir: string, key: string, work: () => Promise<T>, options: BuildLockOptions = {}): Promise<T> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${key.replace(/[^A-Za-z0-9.-]/g, '_')}.lock`);
  let told = false;
  let unreadable = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 0 || !isProcessAlive(pid)) {
      // A dead holder's lock is taken over. An empty file is usually caught between create and write, so it gets a
      // few seconds before it counts as left by a crash.
      if ((Number.isInteger(pid) && pid > 0) || ++unreadable > 100) await rm(file, { force: true });
      else await sleep(50);
      continue;
    }
    if (!told) {
      told = true;
      options.onWait?.(pid);
    }
    await sleep(options.pollMs ?? 500, undefined, options.signal === undefined ? {} : { signal: options.signal });
  }
  try {
    return await work();
  } finally {
    await rm(file, { force: true });
  }
}
