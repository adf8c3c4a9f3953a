import type { z } from 'zod';
import { describeError, PermanentError, retryAfterOf } from '../errors.ts';
import { decode } from '../model/messages.ts';
import type { Logger } from '../../ports/log.ts';
import type { Delivery } from '../../ports/messages.ts';

/** A message as every runtime hands it to its handler: the queue port's delivery, without its lease. */
export type InboundMessage = Pick<Delivery, 'messageId' | 'topic' | 'subscription' | 'data' | 'attributes' | 'attempt'>;

/** What the runtime is to do with a message once its handler has run. */
export type Outcome =
  | { action: 'ack' }
  /** Deliver it again after the runtime's backoff, and no sooner than `afterMs` from now when given. */
  | { action: 'retry'; reason: string; afterMs?: number }
  /** Never deliver it again: keep it in the dead letters with the reason. */
  | { action: 'dead-letter'; reason: string };

/** A message handler, as both runtimes call it. */
export interface MessageHandler {
  (message: InboundMessage): Promise<Outcome>;
  /**
   * Records, where people will see it, that a message of this handler's topic will never be handled (a build's
   * verdict, a lost task), as the handler does itself on its last delivery. Does nothing for a message it cannot
   * decode, or a handler with nothing to record.
   */
  abandon(data: Uint8Array, reason: string): Promise<void>;
}

/**
 * A handler for one topic's messages: decodes and validates the message, runs `handle`, and says what becomes of the
 * message. A PermanentError (a malformed message, an unknown ID) dead-letters it with its reason. Any other failure
 * asks for a retry (no sooner than a RetryableError's `retryAfterMs`, wherever it is in the causes) until the last of
 * `maxAttempts` deliveries: then `giveUp` records the failure where people will see it (a build's verdict, say) and
 * the message is dead-lettered, so nothing waits forever. Rejects only if `giveUp` does.
 */
export function messageHandler<S extends z.ZodType>(options: {
  topic: string;
  schema: S;
  handle: (message: z.infer<S>) => Promise<unknown>;
  giveUp?: (message: z.infer<S>, reason: string) => Promise<unknown>;
  maxAttempts: number;
  logger: Logger;
}): MessageHandler {
  const what = `${options.topic} message`;
  const handler = async (message: InboundMessage): Promise<Outcome> => {
    let decoded: z.infer<S> | undefined;
    try {
      decoded = decode(options.schema, message.data, what);
      await options.handle(decoded);
      return { action: 'ack' };
    } catch (error) {
      const permanent = error instanceof PermanentError;
      if (!permanent && message.attempt < options.maxAttempts) {
        const afterMs = retryAfterOf(error);
        const reason = describeError(error);
        options.logger.warn('message.retry', { topic: options.topic, id: message.messageId, attempt: message.attempt, reason, ...(afterMs === undefined ? {} : { afterMs }) });
        return { action: 'retry', reason, ...(afterMs === undefined ? {} : { afterMs }) };
      }
      const reason = permanent ? describeError(error) : `failed ${message.attempt} times; last: ${describeError(error)}`;
      if (!permanent && decoded !== undefined) await options.giveUp?.(decoded, reason);
      options.logger.error('message.dead-lettered', { topic: options.topic, id: message.messageId, reason });
      return { action: 'dead-letter', reason };
    }
  };
  const abandon = async (data: Uint8Array, reason: string): Promise<void> => {
    if (options.giveUp === undefined) return;
    let decoded: z.infer<S>;
    try {
      decoded = decode(options.schema, data, what);
    } catch {
      return;
    }
    await options.giveUp(decoded, reason);
  };
  return Object.assign(handler, { abandon });
}
