import type { CloudEvent } from '@google-cloud/functions-framework';
import { describeError, PermanentError, RetryableError } from '../../core/errors.ts';
import { topics } from '../../core/model/messages.ts';
import type { InboundMessage, MessageHandler } from '../../core/handlers/message-handler.ts';
import { topicAttribute } from '../../core/pipeline/publish.ts';
import type { Logger } from '../../ports/log.ts';
import type { DeadLetters, Publisher } from '../../ports/messages.ts';

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
export type PubsubFunction = (event: CloudEvent<MessagePublishedData>) => Promise<void>;

/** A deferred copy's attributes: when it is due (ms since the epoch), and how many times its handler has run. */
export const deferral = { notBefore: 'hermetic-not-before', attempts: 'hermetic-attempts' } as const;

export interface PubsubFunctionOptions {
  topic: string;
  deadLetters: DeadLetters;
  /** Publishes deferred copies back to the topic. */
  publisher: Publisher;
  /** The subscription's deliveries before Pub/Sub dead-letters a message. */
  maxDeliveryAttempts: number;
  now: () => number;
  /**
   * Turns what arrives on the topic into the handler's message (Cloud Storage's notification into result-landed):
   * undefined means nothing to do; a PermanentError dead-letters it.
   */
  translate?: (message: InboundMessage) => InboundMessage | undefined;
}

/**
 * A core handler as a Pub/Sub-triggered function: the CloudEvent becomes a plain message, and the handler's outcome
 * becomes what Pub/Sub understands. Ack returns. Dead-letter records the message in `deadLetters` with its reason
 * and returns, so it is acknowledged. Retry throws, so Pub/Sub redelivers after the subscription's backoff; a retry
 * that asks for a delay (a rate limit's reset, which may be an hour away, past anything the backoff reaches in its
 * few attempts) instead acks the message and publishes a copy that says when it is due and how many times it ran.
 * A copy that arrives early runs no handler: it throws, so Pub/Sub backs off, and before its attempts run out it
 * hands the wait to a fresh copy. So the handler runs no sooner than asked.
 */
export function pubsubFunction(handler: MessageHandler, options: PubsubFunctionOptions): PubsubFunction {
  const deadLetter = (message: InboundMessage, attempts: number, reason: string) =>
    options.deadLetters.record({ topic: options.topic, subscription: message.subscription, data: message.data, attributes: message.attributes, attempts, reason });
  return async (event) => {
    const arrived = inboundMessage(event, options.topic);
    let message: InboundMessage | undefined;
    try {
      message = options.translate === undefined ? arrived : options.translate(arrived);
    } catch (error) {
      if (!(error instanceof PermanentError)) throw error;
      await deadLetter(arrived, arrived.attempt, describeError(error));
      return;
    }
    if (message === undefined) return;
    const notBefore = Number(message.attributes[deferral.notBefore] ?? 0);
    if (options.now() < notBefore) {
      if (message.attempt >= options.maxDeliveryAttempts - 1) {
        await options.publisher.publish(options.topic, message.data, message.attributes);
        return;
      }
      throw new RetryableError(`deferred until ${new Date(notBefore).toISOString()}`);
    }
    // A copy's handler has run `attempts` times before; a crash on it is retried by Pub/Sub as the same attempt.
    const ran = message.attributes[deferral.attempts];
    const attempt = ran === undefined ? message.attempt : Number(ran) + 1;
    const outcome = await handler({ ...message, attempt });
    if (outcome.action === 'retry') {
      if (outcome.afterMs === undefined) throw new RetryableError(outcome.reason);
      const due = options.now() + outcome.afterMs;
      await options.publisher.publish(options.topic, message.data, { ...message.attributes, [deferral.notBefore]: String(due), [deferral.attempts]: String(attempt) });
      return;
    }
    if (outcome.action === 'dead-letter') await deadLetter(arrived, attempt, outcome.reason);
  };
}

/** The plain message in a `messagePublished` CloudEvent of `topic`. */
function inboundMessage(event: CloudEvent<MessagePublishedData>, topic: string): InboundMessage {
  const message = event.data?.message;
  return {
    messageId: message?.messageId ?? event.id,
    topic,
    subscription: event.data?.subscription ?? '',
    data: Buffer.from(message?.data ?? '', 'base64'),
    attributes: message?.attributes ?? {},
    attempt: event.data?.deliveryAttempt ?? 1,
  };
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
  /** Records what the topic's handler would have on its last delivery (see MessageHandler.abandon). */
  abandon: (topic: string, message: InboundMessage, reason: string) => Promise<void>;
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
    const original = { messageId: message?.messageId ?? event.id, topic, subscription, data, attributes, attempt: attempts };
    await options.abandon(topic, original, reason);
    await options.deadLetters.record({
      topic,
      subscription,
      data,
      attributes,
      attempts,
      reason,
    });
  };
  return handle;
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
