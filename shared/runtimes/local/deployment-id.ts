import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { deploymentIdPattern } from '../../core/model/ids.ts';

/**
 * The deployment ID of the runtime on this data directory: made at random on first use and kept in the directory, so
 * that runtimes on two data directories never share a worker name, and a restarted one adopts its own workers. Call
 * it holding the directory's lock. Throws when the kept ID is damaged, rather than orphaning the workers it names.
 */
export async function localDeploymentId(dataDir: string): Promise<string> {
  const file = join(dataDir, 'deployment-id');
  let kept: string;
  try {
    kept = (await readFile(file, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    const made = randomBytes(5).toString('hex');
    await writeFile(file, `${made}\n`, { flag: 'wx' });
    return made;
  }
  if (!deploymentIdPattern.test(kept)) {
    throw new Error(`${file} holds ${JSON.stringify(kept)}, not a deployment ID (${deploymentIdPattern}); restore it, or remove it if no worker of this data directory still runs`);
  }
  return kept;
}
