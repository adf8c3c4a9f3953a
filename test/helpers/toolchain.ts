import { execFileSync } from 'node:child_process';

/** Why a test that builds Go code cannot run here, or false when the host has a Go toolchain. */
export const needsGo: string | false = (() => {
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'needs the go toolchain on this host (apt-get install golang-go; .ci/run installs it)';
  }
})();
