import { topics } from '../../core/model/messages.ts';
import { createHandlers, handlerTopics, type HandlerDeps, type HandlerName, type Handlers } from '../../core/handlers/handlers.ts';
import type { InboundMessage } from '../../core/handlers/message-handler.ts';
import { resultLandedOf } from '../../adapters/gcp/object-notification.ts';
import { deadLetterFunction, pubsubFunction, type PubsubFunction } from '../../adapters/gcp/pubsub-function.ts';

/** What the Google Cloud entry points need: the handlers' deps. */
export type FunctionDeps = HandlerDeps;

/**
 * Each message-triggered function and the topic it listens on: the core's handlers, and the function on Pub/Sub's
 * dead-letter topic. One place, used by the Google Cloud runtime and by deploy.
 */
export const triggers = { ...handlerTopics, deadLetter: topics.deadLetters } as const;
export type MessageFunctionName = keyof typeof triggers;

export interface Functions extends Omit<Handlers, 'message'> {
  message: Record<MessageFunctionName, PubsubFunction>;
}

/** Builds every Cloud Function over one set of deps: the core's handlers behind Pub/Sub's CloudEvents. Does no I/O. */
export function createFunctions(deps: FunctionDeps): Functions {
  const handlers = createHandlers(deps);
  const names = Object.keys(handlerTopics) as HandlerName[];
  // What arrives on a topic as the handler's message: on result-landed, Cloud Storage's notifications arrive.
  const translateOf = (name: HandlerName) =>
    name === 'landed' ? (message: InboundMessage) => resultLandedOf(message, deps.logger) : undefined;
  const wrapped = Object.fromEntries(
    names.map((name) => {
      const translate = translateOf(name);
      const options = {
        topic: handlerTopics[name],
        deadLetters: deps.deadLetters,
        publisher: deps.publisher,
        maxDeliveryAttempts: deps.maxDeliveryAttempts,
        now: deps.now,
        ...(translate === undefined ? {} : { translate }),
      };
      return [name, pubsubFunction(handlers.message[name], options)];
    }),
  ) as Record<HandlerName, PubsubFunction>;
  const nameOf = new Map(names.map((name) => [handlerTopics[name] as string, name]));
  const abandon = async (topic: string, message: InboundMessage, reason: string): Promise<void> => {
    const name = nameOf.get(topic);
    if (name === undefined) return;
    let translated: InboundMessage | undefined;
    try {
      const translate = translateOf(name);
      translated = translate === undefined ? message : translate(message);
    } catch {
      return; // a message its handler could never read: nothing to record but the dead letter
    }
    if (translated !== undefined) await handlers.message[name].abandon(translated.data, reason);
  };
  return {
    ...handlers,
    message: { ...wrapped, deadLetter: deadLetterFunction({ deadLetters: deps.deadLetters, logger: deps.logger, abandon }) },
  };
}
