import { setTimeout as sleep } from 'node:timers/promises';

/**
 * How long a test waits for what should take seconds. It guards against a hang and checks no speed: a machine
 * running many tests at once may be many times slower than an idle one, and a verdict must not depend on that.
 */
export const hangGuardMs = 120_000;

/**
 * Polls `probe` every `everyMs` (50) until it gives something other than undefined or false, and resolves with it;
 * throws, naming `what` (and `detail()`, when given), after `timeoutMs` (hangGuardMs).
 */
export async function waitUntil<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  options: { timeoutMs?: number; everyMs?: number; detail?: () => string } = {},
): Promise<T> {
  const until = Date.now() + (options.timeoutMs ?? hangGuardMs);
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > until) throw new Error(`timed out waiting until ${what}${options.detail === undefined ? '' : `: ${options.detail()}`}`);
    await sleep(options.everyMs ?? 50);
  }
}
