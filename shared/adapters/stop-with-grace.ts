/** How long a worker whose result is in gets to exit by itself before it is killed. */
export const stopGraceMs = 2_000;

/**
 * Lets a worker that is finishing by itself (its result is in) exit on its own for up to `graceMs`, then kills it.
 * Resolves once it is gone.
 */
export async function stopWithGrace(gone: Promise<void>, kill: () => Promise<void>, graceMs = stopGraceMs): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<'late'>((resolve) => (timer = setTimeout(resolve, graceMs, 'late')));
  const outcome = await Promise.race([gone.then(() => 'gone' as const), grace]);
  clearTimeout(timer);
  if (outcome === 'late') await kill();
}
