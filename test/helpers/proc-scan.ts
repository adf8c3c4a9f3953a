import { readdirSync, readFileSync } from 'node:fs';

/**
 * Live (not zombie) processes for which `match` says yes, read from /proc; empty where there is no /proc.
 * Synchronous on purpose: tests call it inside onExit callbacks, which must not await.
 */
export function scanProcesses(match: (process: { pid: number; args: string[]; env: string[] }) => boolean): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const state = stat.charAt(stat.lastIndexOf(')') + 2);
      if (state === 'Z' || state === 'X') continue;
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      if (match({ pid, args, env })) found.push(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/** Live processes carrying the process sandbox's marker of the worker in `workDir` (its work root and task ID). */
export function processesOfWorker(workDir: string): number[] {
  return scanProcesses(({ env }) => env.includes(`HERMETIC_WORKER=${workDir}`));
}

/** Live processes with `argument` among their arguments. */
export function processesWithArgument(argument: string): number[] {
  return scanProcesses(({ args }) => args.includes(argument));
}
