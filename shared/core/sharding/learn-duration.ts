/**
 * How much one new observation moves a learned duration: 0.3, so the estimate follows a real change in a few
 * runs (after three runs at a new speed it has covered 1 - 0.7^3 = 66% of the step) while one outlier, say a run
 * on a busy machine or a test that hung until its timeout, moves it only 30% of the way.
 */
export const learnWeight = 0.3;

/**
 * The new learned duration in seconds after observing `observed`: an exponentially weighted average,
 * `weight * observed + (1 - weight) * previous`. With no previous value the observation is taken as is. An
 * observation that is not a finite number >= 0 is ignored (the previous value is returned, possibly undefined);
 * a weight outside (0, 1] throws RangeError.
 */
export function learnDuration(previous: number | undefined, observed: number, weight = learnWeight): number | undefined {
  if (!(weight > 0 && weight <= 1)) throw new RangeError(`learning weight must be in (0, 1], got ${weight}`);
  if (!Number.isFinite(observed) || observed < 0) return previous;
  if (previous === undefined || !Number.isFinite(previous) || previous < 0) return observed;
  return weight * observed + (1 - weight) * previous;
}
