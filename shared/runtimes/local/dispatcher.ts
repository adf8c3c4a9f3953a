import { describeError } from '../../core/errors.ts';
import type { MessageHandler } from '../../core/handlers/message-handler.ts';
import type { Logger } from '../../ports/log.ts';
import type { Delivery, MessageQueue } from '../../ports/messages.ts';
import { Signal } from './signal.ts';

/** One subscription and the function it feeds. */
export interface Route {
  topic: string;
  subscription: string;
  handle: MessageHandler;
  /** Messages of this subscription handled at once. */
  concurrency: number;
}

/** Idle pulls wait at most this long, so expired leases and due retries are picked up without a publish. */
const defaultIdlePollMs = 250;
/** How long after a failed pull the next is tried, unless a publish wakes the loop sooner. */
const pullRetryMs = 1000;

/**
 * Feeds queued messages to their handlers and does what each handler's outcome says: ack; nack, for redelivery after
 * backoff and no sooner than the delay it asked for; or dead-letter. A handler that rejects is nacked. Wakes at once
 * on a publish in this process. A pull that fails is reported and tried again, never fatal.
 */
export function createDispatcher(options: { queue: MessageQueue; routes: Route[]; logger: Logger; idlePollMs?: number }) {
  const { queue, logger } = options;
  const idlePollMs = options.idlePollMs ?? defaultIdlePollMs;
  const signals = new Map(options.routes.map((route) => [route.topic, new Signal()]));
  const settled = new Signal();
  let stopped = false;
  let active = 0;
  const unsubscribe = queue.onPublish((topic) => signals.get(topic)?.notify());
  const loops = options.routes.map((route) => loop(route));

  async function loop(route: Route): Promise<void> {
    const signal = signals.get(route.topic) ?? new Signal();
    let running = 0;
    let failing = false;
    while (!stopped) {
      const room = route.concurrency - running;
      let deliveries: Delivery[];
      try {
        deliveries = room > 0 ? await queue.pull(route.subscription, room) : [];
      } catch (error) {
        // A queue that cannot lease now (its disk is full, say) still holds its messages: pull again after a pause.
        // The first failure is reported; the rest until it recovers would only repeat it.
        if (!failing) logger.error('message.pull-failed', { subscription: route.subscription, reason: describeError(error) });
        failing = true;
        await signal.wait(pullRetryMs);
        continue;
      }
      if (failing) logger.info('message.pull-recovered', { subscription: route.subscription });
      failing = false;
      for (const delivery of deliveries) {
        running++;
        active++;
        void handle(route, delivery).finally(() => {
          running--;
          active--;
          signal.notify();
          settled.notify();
        });
      }
      // No room, or a short batch: nothing more is due now, and asking again at once would lease nothing (in a
      // write transaction even so). A publish (from a later turn of the event loop) or a finished handler (at the
      // earliest from a later microtask) wakes the loop, so no wake-up comes before this wait.
      if (room === 0 || deliveries.length < room) await signal.wait(idlePollMs);
    }
  }

  async function handle(route: Route, delivery: Delivery): Promise<void> {
    try {
      const outcome = await route.handle(delivery);
      if (outcome.action === 'ack') await queue.ack(delivery);
      else if (outcome.action === 'retry') await queue.nack(delivery, outcome.reason, outcome.afterMs);
      else await queue.deadLetter(delivery, outcome.reason);
    } catch (error) {
      const reason = describeError(error);
      logger.warn('message.retry', { topic: route.topic, id: delivery.messageId, attempt: delivery.attempt, reason });
      await queue.nack(delivery, reason).catch((nackError: unknown) => {
        logger.error('message.nack-failed', { topic: route.topic, reason: describeError(nackError) });
      });
    }
  }

  return {
    /** Handlers running now. */
    get active(): number {
      return active;
    },
    /** Resolves at the next handler completion, or after `timeoutMs`. */
    settled(timeoutMs: number): Promise<void> {
      return settled.wait(timeoutMs);
    },
    /** Stops pulling and waits for running handlers to finish. */
    async stop(): Promise<void> {
      stopped = true;
      unsubscribe();
      for (const signal of signals.values()) signal.notify();
      await Promise.all(loops);
      while (active > 0) await settled.wait(idlePollMs);
    },
  };
}

export type Dispatcher = ReturnType<typeof createDispatcher>;
