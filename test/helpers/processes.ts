import { readdir, readFile } from 'node:fs/promises';

/** PIDs of live processes whose environment has `name` set to a value starting with `prefix`; Linux only. */
export async function processesWithEnv(name: string, prefix = ''): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const environ = await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '');
    const match = environ.split('\0').some((pair) => pair.startsWith(`${name}=${prefix}`));
    if (match) found.push(Number(entry));
  }
  return found;
}
