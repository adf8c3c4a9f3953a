/** The median of a list of numbers (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** "12.3 ms (min 10.1, max 20.4, n=15)" */
export function describe(values: readonly number[], unit: string): string {
  const fixed = (value: number) => value.toFixed(1);
  return `${fixed(median(values))} ${unit} (min ${fixed(Math.min(...values))}, max ${fixed(Math.max(...values))}, n=${values.length})`;
}
