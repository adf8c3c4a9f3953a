import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/** Which of `programs` no directory of `path` (a PATH value) holds as a file this process may execute. */
export async function programsNotOnPath(programs: readonly string[], path: string): Promise<string[]> {
  const dirs = path.split(delimiter).filter((dir) => dir !== '');
  const found = await Promise.all(programs.map((program) => onPath(program, dirs)));
  return programs.filter((_, index) => !found[index]);
}

async function onPath(program: string, dirs: readonly string[]): Promise<boolean> {
  for (const dir of dirs) {
    try {
      await access(join(dir, program), constants.X_OK);
      return true;
    } catch {
      // Not in this directory; the next may have it.
    }
  }
  return false;
}
