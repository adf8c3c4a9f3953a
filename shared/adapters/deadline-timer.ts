/** A timer set for a moment in time; `cancel` stops it. */
export interface DeadlineTimer {
  cancel(): void;
}

/**
 * Calls `fire` once `deadline` (ms since the epoch) has come. setTimeout overflows past 2^31-1 ms (about 25 days)
 * and would fire at once, so a far deadline is reached in steps.
 */
export function atDeadline(deadline: number, fire: () => void): DeadlineTimer {
  let timer: NodeJS.Timeout;
  const arm = () => {
    timer = setTimeout(
      () => (Date.now() < deadline ? arm() : fire()),
      Math.max(0, Math.min(deadline - Date.now(), 2 ** 31 - 1)),
    );
  };
  arm();
  return { cancel: () => clearTimeout(timer) };
}
