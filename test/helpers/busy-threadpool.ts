import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { waitUntil } from './wait.ts';

/**
 * Holds every thread of this process's libuv pool in a blocking open of a FIFO made in `dir`, so that its file system
 * calls wait, as on a loaded machine, until release(). Timers, child processes and synchronous calls go on.
 */
export function occupyThreadpool(dir: string): { release(): Promise<void> } {
  const size = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const fifos = Array.from({ length: size }, (_, index) => join(dir, `threadpool-${index}`));
  execFileSync('mkfifo', fifos);
  const readers = fifos.map((fifo) => open(fifo, 'r'));
  return {
    async release() {
      for (const fifo of fifos) {
        // A writer can open without blocking only once the reader waits in open(), which then returns.
        await waitUntil(() => {
          try {
            closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
            return true;
          } catch {
            return false;
          }
        }, `a reader on ${fifo}`, { everyMs: 5 });
      }
      await Promise.all(readers.map(async (reader) => (await reader).close()));
    },
  };
}
