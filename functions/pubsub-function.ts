import type { CloudEvent } from '@google-cloud/functions-framework';
import type { z } from 'zod';
import { describeError, PermanentError } from '../shared/errors.ts';
import { decode, topics } from '../shared/model/messages.ts';
import { topicAttribute } from '../shared/pipeline/publish.ts';
import type { Logger } from '../shared/ports/log.ts';
import type { DeadLetters } from '../shared/ports/messages.ts';

/** The data of a Pub/Sub `messagePublished` CloudEvent, as Eventarc delivers it. */
export interface MessagePublishedData {
  message?: {
    data?: string;
    attributes?: Record<string, string>;
    messageId?: string;
    publishTime?: string;
  };
  subscription?: string;
  /** Present when the subscription has a dead-letter policy. */
  deliveryAttempt?: number;
}

/** A Pub/Sub-triggered function. */
export interface PubsubFunction {
  (event: CloudEvent<MessagePublishedData>): Promise<void>;
  /**
   * Records, where people will see it, that a message of this function's topic will never be handled (a build's
   * verdict, a lost task), as the function does itself on its last delivery. Does nothing for a message it cannot
   * decode, or a function with nothing to record.
   */
  abandon(data: Uint8Array, reason: string): Promise<void>;
}

/**
 * Wraps a handler as a Pub/Sub-triggered function: decodes and validates the message, runs the handler, and maps
 * failures the way the platform needs. A PermanentError (malformed message, unknown ID) is recorded in the dead
 * letters with its reason and acknowledged. Any other failure is thrown, so the platform redelivers with backoff,
 * until the last of `maxAttempts` deliveries: then `giveUp` records the failure where people will see it (a build's
 * verdict, say), the message goes to the dead letters, and it is acknowledged, so nothing waits forever.
 */
export function pubsubFunction<S extends z.ZodType>(options: {
  topic: string;
  schema: S;
  handle: (message: z.infer<S>) => Promise<unknown>;
  giveUp?: (message: z.infer<S>, reason: string) => Promise<unknown>;
  maxAttempts: number;
  deadLetters: DeadLetters;
  logger: Logger;
}): PubsubFunction {
  const handle = async (event: CloudEvent<MessagePublishedData>): Promise<void> => {
    const message = event.data?.message;
    const data = Buffer.from(message?.data ?? '', 'base64');
    const attempt = event.data?.deliveryAttempt ?? 1;
    let decoded: z.infer<S> | undefined;
    try {
      decoded = decode(options.schema, data, `${options.topic} message`);
      await options.handle(decoded);
    } catch (error) {
      const permanent = error instanceof PermanentError;
      if (!permanent && attempt < options.maxAttempts) throw error;
      const reason = permanent ? describeError(error) : `failed ${attempt} times; last: ${describeError(error)}`;
      if (!permanent && decoded !== undefined) await options.giveUp?.(decoded, reason);
      options.logger.error('message.dead-lettered', { topic: options.topic, id: message?.messageId, reason });
      await options.deadLetters.record({
        topic: options.topic,
        subscription: event.data?.subscription ?? '',
        data,
        attributes: message?.attributes ?? {},
        attempts: attempt,
        reason,
      });
    }
  };
  const abandon = async (data: Uint8Array, reason: string): Promise<void> => {
    if (options.giveUp === undefined) return;
    let decoded: z.infer<S>;
    try {
      decoded = decode(options.schema, data, `${options.topic} message`);
    } catch {
      return;
    }
    await options.giveUp(decoded, reason);
  };
  return Object.assign(handle, { abandon });
}

/** The attributes Pub/Sub adds to a message it forwards to a dead-letter topic. */
const forwarded = {
  subscription: 'CloudPubSubDeadLetterSourceSubscription',
  deliveryCount: 'CloudPubSubDeadLetterSourceDeliveryCount',
} as const;

/**
 * The function on the dead-letter topic: for each message Pub/Sub gave up on (its function kept crashing or timing
 * out, or never learned it was on its last delivery), records what that function would have on its last delivery
 * (`abandon`: a build's verdict, a lost task), then keeps the message in the dead letters with where it was going.
 * It fails only if the store does; then it throws and Pub/Sub redelivers.
 */
export function deadLetterFunction(options: {
  deadLetters: DeadLetters;
  logger: Logger;
  /** The function of a topic, to abandon its message. */
  functionOf: (topic: string) => PubsubFunction | undefined;
}): PubsubFunction {
  const handle = async (event: CloudEvent<MessagePublishedData>): Promise<void> => {
    const message = event.data?.message;
    const attributes = message?.attributes ?? {};
    const subscription = attributes[forwarded.subscription] ?? '';
    const attempts = Number(attributes[forwarded.deliveryCount] ?? 0);
    // Our messages name their topic; Cloud Storage's notifications only ever go to result-landed.
    const topic = attributes[topicAttribute] ?? (attributes['eventType'] === 'OBJECT_FINALIZE' ? topics.resultLanded : 'unknown');
    const reason = `Pub/Sub gave up after ${attempts > 0 ? attempts : 'its maximum'} deliveries: the function failed or timed out every time`;
    const data = Buffer.from(message?.data ?? '', 'base64');
    options.logger.error('message.dead-lettered', { topic, id: message?.messageId, reason });
    await options.functionOf(topic)?.abandon(data, reason);
    await options.deadLetters.record({
      topic,
      subscription,
      data,
      attributes,
      attempts,
      reason,
    });
  };
  return Object.assign(handle, { abandon: async () => {} });
}

/** A `messagePublished` CloudEvent for bytes on a topic, shaped as Eventarc delivers it. */
export function messagePublishedEvent(options: {
  project: string;
  topic: string;
  subscription: string;
  messageId: string;
  data: Uint8Array;
  attributes: Record<string, string>;
  publishedAt: number;
  deliveryAttempt: number;
}): CloudEvent<MessagePublishedData> {
  const time = new Date(options.publishedAt).toISOString();
  return {
    specversion: '1.0',
    id: options.messageId,
    type: 'google.cloud.pubsub.topic.v1.messagePublished',
    source: `//pubsub.googleapis.com/projects/${options.project}/topics/${options.topic}`,
    time,
    datacontenttype: 'application/json',
    data: {
      message: {
        data: Buffer.from(options.data).toString('base64'),
        attributes: options.attributes,
        messageId: options.messageId,
        publishTime: time,
      },
      subscription: `projects/${options.project}/subscriptions/${options.subscription}`,
      deliveryAttempt: options.deliveryAttempt,
    },
  };
}
