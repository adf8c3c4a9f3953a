import { etagDocId } from '../../core/model/ids.ts';
import type { EtagCache } from '../../ports/github.ts';
import { collections, type StateStore } from '../../ports/state.ts';

/** An EtagCache kept in the state store's `etags` collection, so every function instance shares what it learnt. Rejects when the store does. */
export function createStateEtagCache(state: StateStore): EtagCache {
  return {
    async get(key) {
      const doc = await state.get(collections.etags, etagDocId(key));
      // The key is kept in the document too: a hash collision must not hand back another request's answer.
      return doc === undefined || doc.key !== key ? undefined : { etag: doc.etag, value: doc.value };
    },
    async set(key, entry) {
      await state.transaction(async (tx) => {
        tx.set(collections.etags, etagDocId(key), { key, etag: entry.etag, value: entry.value, storedAt: Date.now() });
      });
    },
  };
}
