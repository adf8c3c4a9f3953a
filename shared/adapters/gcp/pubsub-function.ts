import type { CloudEvent } from '@google-cloud/functions-framework';
import { RetryableError } from '../../core/errors.ts';
import { topics } from '../../core/model/messages.ts';
import type { InboundMessage, MessageHandler } from '../../core/handlers/message-handler.ts';
import { topicAttribute } from '../../core/pipeline/publish.ts';
import type { Logger } from '../../ports/log.ts';
import type { DeadLetters } from '../../ports/messages.ts';

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

/**
 * A core handler as a Pub/Sub-triggered function: the CloudEvent becomes a plain message, and the handler's outcome
 * becomes what Pub/Sub understands. Ack returns; retry throws, so Pub/Sub redelivers after the subscription's
 * backoff; dead-letter records the message in `deadLetters` with its reason and returns, so it is acknowledged.
 */
export function pubsubFunction(handler: MessageHandler, options: { topic: string; deadLetters: DeadLetters }): PubsubFunction {
  return async (event) => {
    const message = inboundMessage(event, options.topic);
    const outcome = await handler(message);
    if (outcome.action === 'retry') throw new RetryableError(outcome.reason, outcome.afterMs === undefined ? undefined : { retryAfterMs: outcome.afterMs });
    if (outcome.action === 'dead-letter') {
      await options.deadLetters.record({
        topic: options.topic,
        subscription: message.subscription,
        data: message.data,
        attributes: message.attributes,
        attempts: message.attempt,
        reason: outcome.reason,
      });
    }
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
  /** The handler of a topic, to abandon its message. */
  handlerOf: (topic: string) => MessageHandler | undefined;
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
    await options.handlerOf(topic)?.abandon(data, reason);
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
