import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isProcessAlive } from '../process-alive.ts';

/**
 * Takes the data directory for this process, so two runtimes never share one database and worker tree. A lock left
 * by a process that is gone is taken over. Throws, naming the other process, when one is alive.
 */
export async function lockDataDir(dataDir: string): Promise<{ release(): Promise<void> }> {
  await mkdir(dataDir, { recursive: true });
  const file = join(dataDir, 'lock');
  for (let tries = 0; tries < 2; tries++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      return { release: () => rm(file, { force: true }) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && isProcessAlive(pid)) {
        throw new Error(`another hermetic (pid ${pid}) is using the data directory ${dataDir}; stop it or use --data`);
      }
      await rm(file, { force: true });
    }
  }
  throw new Error(`could not lock the data directory ${dataDir}`);
}
