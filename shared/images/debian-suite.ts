import { readFile } from 'node:fs/promises';
import { describeError } from '../core/errors.ts';

/**
 * The Debian suite this machine runs (VERSION_CODENAME in os-release), which the base images are made from, so
 * they come from the same archive apt here is configured for. Throws saying so when the file names none.
 */
export async function debianSuite(osRelease = '/etc/os-release'): Promise<string> {
  const text = await readFile(osRelease, 'utf8').catch((error: unknown) => {
    throw new Error(`cannot read ${osRelease} to find the Debian suite: ${describeError(error)}`, { cause: error });
  });
  const match = /^VERSION_CODENAME=["']?([a-z0-9-]+)["']?\s*$/m.exec(text);
  if (match?.[1] === undefined) throw new Error(`${osRelease} names no VERSION_CODENAME; base images are made from a Debian suite`);
  return match[1];
}
