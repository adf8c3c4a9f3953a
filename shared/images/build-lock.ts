import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tryFileLock, type HeldLock } from '../file-lock.ts';

export interface BuildLockOptions {
  /** Called once if another process holds the lock, with its pid when known. */
  onWait?: (pid: number | undefined) => void;
  signal?: AbortSignal;
  pollMs?: number;
}

/**
 * Runs `work` holding the lock `<dir>/<key>.lock`, so two processes (a test run and `hermetic up`, say) never build
 * the same image at once: the second waits, then finds the tag made. The operating system frees the lock when its
 * holder dies (see tryFileLock). Rejects when `signal` aborts while waiting, or with whatever `work` throws.
 */
export async function withBuildLock<T>(dir: string, key: string, work: () => Promise<T>, options: BuildLockOptions = {}): Promise<T> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${key.replace(/[^A-Za-z0-9.-]/g, '_')}.lock`);
  let told = false;
  let held: HeldLock;
  for (;;) {
    options.signal?.throwIfAborted();
    const attempt = await tryFileLock(path);
    if ('held' in attempt) {
      held = attempt.held;
      break;
    }
    if (!told) {
      told = true;
      options.onWait?.(attempt.holder);
    }
    await sleep(options.pollMs ?? 500, undefined, options.signal === undefined ? {} : { signal: options.signal });
  }
  try {
    return await work();
  } finally {
    await held.release();
  }
}
