import type { PubSub, Topic } from '@google-cloud/pubsub';
import { PermanentError } from '../../core/errors.ts';
import type { Publisher } from '../../ports/messages.ts';
import { fromGrpcError, grpcCode, grpcStatus } from './grpc-error.ts';

/** Pub/Sub's rule for a topic's own name: 3 to 255 characters, starting with a letter, not with "goog". */
const TOPIC_NAME = /^(?!goog)[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$/;

/**
 * The pipeline awaits every publish, one at a time, so a batch should leave at once: a publish waits for the next
 * turn of the event loop (which gathers the publishes made together, such as a build's shard tasks), not the
 * client's default 10 ms.
 */
const batching = { maxMessages: 100, maxMilliseconds: 0 } as const;

export interface PubsubPublisherOptions {
  pubsub: PubSub;
}

/**
 * A publisher on Pub/Sub topics of the client's project. Resolves with the message ID once Pub/Sub has stored the
 * message (the client retries transient failures itself first). The topic must exist: publishing to one that does
 * not rejects with a PermanentError naming it; a bad topic name, data or attributes reject as PermanentError, and
 * other failures as RetryableError. The data and attributes are copied before the call returns.
 */
export function createPubsubPublisher(options: PubsubPublisherOptions): Publisher {
  const topics = new Map<string, Topic>();
  const topicOf = (name: string): Topic => {
    let topic = topics.get(name);
    if (topic === undefined) {
      topic = options.pubsub.topic(name, { batching });
      topics.set(name, topic);
    }
    return topic;
  };

  return {
    async publish(topic: string, data: Uint8Array, attributes: Record<string, string> = {}): Promise<string> {
      if (!TOPIC_NAME.test(topic)) {
        throw new PermanentError(
          `invalid Pub/Sub topic name ${JSON.stringify(topic)}: 3 to 255 letters, digits or -_.~+%, ` +
            'starting with a letter and not with "goog"',
        );
      }
      try {
        return await topicOf(topic).publishMessage({ data: Buffer.from(data), attributes: { ...attributes } });
      } catch (error) {
        if (grpcCode(error) === grpcStatus.notFound) {
          throw new PermanentError(`publish to Pub/Sub topic ${topic}: the topic does not exist`, { cause: error });
        }
        throw fromGrpcError(`publish to Pub/Sub topic ${topic}`, error);
      }
    },
  };
}
