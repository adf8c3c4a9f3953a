import { access } from 'node:fs/promises';

/** True when something exists at `path` (any kind of file); never throws. */
export function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
