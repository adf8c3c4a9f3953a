/** What a command may touch of the outside world, so tests can run commands in-process. */
export interface Io {
  cwd: string;
  /** Machine-readable output and help only. */
  stdout(text: string): void;
  /** Progress, logs and errors. */
  stderr(text: string): void;
  /** Resolves when the user asks to stop (Ctrl-C, SIGTERM). */
  interrupted: Promise<void>;
}

export const exitCodes = { ok: 0, failure: 1, usage: 2, interrupted: 130 } as const;

/** Bad flags or arguments; the message says which and what was expected. */
export class UsageError extends Error {
  override name = 'UsageError';
}
