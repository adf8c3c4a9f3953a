import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/**
 * Which of `programs` this process may not execute: a name, looked up in each directory of `path` (a PATH value),
 * or a path with a slash, taken as it is.
 */
export async function programsNotOnPath(programs: readonly string[], path: string): Promise<string[]> {
  const dirs = path.split(delimiter).filter((dir) => dir !== '');
  const found = await Promise.all(programs.map((program) => (program.includes('/') ? executable(program) : onPath(program, dirs))));
  return programs.filter((_, index) => !found[index]);
}

async function onPath(program: string, dirs: readonly string[]): Promise<boolean> {
  for (const dir of dirs) if (await executable(join(dir, program))) return true;
  return false;
}

function executable(file: string): Promise<boolean> {
  return access(file, constants.X_OK).then(
    () => true,
    () => false,
  );
}
