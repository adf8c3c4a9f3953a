import { durationDocId } from '../model/ids.ts';
import type { LearnedDuration } from '../model/types.ts';
import { collections, type StateStore } from '../../ports/state.ts';
import { learnDuration } from '../sharding/learn-duration.ts';

/** Documents updated per transaction: well under Firestore's 500 writes per commit. */
const batchSize = 100;

/** What a builder has learned of its units' durations, in seconds by unit name. */
export async function learnedDurations(state: StateStore, builder: string): Promise<Map<string, number>> {
  const docs = await state.query(collections.durations, { where: { builder } });
  return new Map(docs.map((doc) => [doc.unit, doc.seconds]));
}

/**
 * Folds one build's observed seconds per unit into the builder's learned durations. Each document remembers the
 * build that last updated it, so a build's observations are learned once however often this runs for it.
 */
export async function learnFromBuild(
  deps: { state: StateStore; now: () => number },
  builder: string,
  buildId: string,
  observed: ReadonlyMap<string, number>,
): Promise<void> {
  const entries = [...observed];
  for (let start = 0; start < entries.length; start += batchSize) {
    const batch = entries.slice(start, start + batchSize);
    await deps.state.transaction(async (tx) => {
      const docs = await Promise.all(batch.map(([unit]) => tx.get(collections.durations, durationDocId(builder, unit))));
      batch.forEach(([unit, seconds], index) => {
        const previous = docs[index];
        if (previous?.lastBuildId === buildId) return;
        const learned = learnDuration(previous?.seconds, seconds);
        if (learned === undefined) return;
        const doc: LearnedDuration = {
          builder,
          unit,
          seconds: learned,
          runs: (previous?.runs ?? 0) + 1,
          lastBuildId: buildId,
          updatedAt: deps.now(),
        };
        tx.set(collections.durations, durationDocId(builder, unit), doc);
      });
    });
  }
}
