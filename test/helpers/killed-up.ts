import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitUntil } from './wait.ts';

const bin = fileURLToPath(new URL('../../bin/hermetic.js', import.meta.url));

/**
 * Runs `hermetic up ARGS` until `ready` says yes of what it has printed on stderr so far, then kills it with SIGKILL
 * (also when the wait fails) and waits for it to be gone. `what` names the wait in a timeout.
 */
export async function runUpUntilKilled(args: string[], ready: (stderr: string) => boolean | Promise<boolean>, what: string): Promise<void> {
  const child = spawn(process.execPath, [bin, 'up', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  try {
    await waitUntil(() => ready(stderr), what, { detail: () => stderr.slice(-2000) });
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}
