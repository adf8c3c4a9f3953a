import type { DocumentData, Firestore } from '@google-cloud/firestore';
import { PermanentError } from '../../core/errors.ts';
import type { DeadLetter, DeadLetters } from '../../ports/messages.ts';
import { collectionPrefix } from './firestore-state.ts';
import { fromGrpcError } from './grpc-error.ts';

/** The collection, before the prefix. */
const COLLECTION = 'deadLetters';
/**
 * A message's bytes kept at most, so a letter fits in a Firestore document (1 MiB) with its attributes and reason.
 * Pub/Sub takes messages of up to 10 MB; a longer one is kept cut, and its reason says so.
 */
const MAX_DATA_BYTES = 512 * 1024;
const MAX_REASON_CHARS = 16 * 1024;

export interface FirestoreDeadLettersOptions {
  firestore: Firestore;
  /** Put before the collection name, as for the state store. */
  prefix?: string;
  now?: () => number;
}

/**
 * Dead letters in the Firestore collection `deadLetters`, one document each under a random ID, listed newest first
 * by `at` (letters of the same millisecond in no set order). Data is kept as bytes, cut at 512 KiB; failures from
 * Firestore reject as RetryableError or PermanentError.
 */
export function createFirestoreDeadLetters(options: FirestoreDeadLettersOptions): DeadLetters {
  const prefix = collectionPrefix(options.prefix);
  const now = options.now ?? Date.now;
  const letters = () => options.firestore.collection(`${prefix}${COLLECTION}`);

  return {
    async record(letter: Omit<DeadLetter, 'id' | 'at'>): Promise<void> {
      const cut = letter.data.byteLength > MAX_DATA_BYTES;
      let reason = letter.reason.length > MAX_REASON_CHARS ? `${letter.reason.slice(0, MAX_REASON_CHARS)}...` : letter.reason;
      if (cut) reason += ` (data cut to ${MAX_DATA_BYTES} of ${letter.data.byteLength} bytes)`;
      const doc: DocumentData = {
        topic: letter.topic,
        subscription: letter.subscription,
        data: Buffer.from(letter.data.subarray(0, MAX_DATA_BYTES)),
        attributes: { ...letter.attributes },
        attempts: letter.attempts,
        reason,
        at: now(),
      };
      try {
        await letters().doc().set(doc);
      } catch (error) {
        throw fromGrpcError(`record a dead letter of ${letter.subscription} in Firestore`, error);
      }
    },

    async list(limit = 100): Promise<DeadLetter[]> {
      if (!Number.isSafeInteger(limit) || limit < 0) {
        throw new PermanentError(`dead letters: limit must be a whole number, got ${limit}`);
      }
      if (limit === 0) return [];
      try {
        const snapshot = await letters().orderBy('at', 'desc').limit(limit).get();
        return snapshot.docs.map((doc) => {
          const data: unknown = doc.get('data');
          return {
            id: doc.id,
            topic: String(doc.get('topic')),
            subscription: String(doc.get('subscription')),
            // A copy: the caller owns what it is handed.
            data: data instanceof Uint8Array ? new Uint8Array(data) : new Uint8Array(),
            attributes: { ...((doc.get('attributes') ?? {}) as Record<string, string>) },
            attempts: Number(doc.get('attempts')),
            reason: String(doc.get('reason')),
            at: Number(doc.get('at')),
          };
        });
      } catch (error) {
        throw fromGrpcError('list dead letters in Firestore', error);
      }
    },
  };
}
