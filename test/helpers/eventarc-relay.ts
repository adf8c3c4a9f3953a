import type { Message, PubSub, Subscription } from '@google-cloud/pubsub';
import { messagePublishedEvent } from '../../shared/adapters/gcp/pubsub-function.ts';
import { describeError } from '../../shared/core/errors.ts';

/** One function's trigger: messages on `topic` go to the function served at `url`. */
export interface RelayRoute {
  topic: string;
  url: string;
}

/**
 * Plays Eventarc for tests on the Pub/Sub emulator: a pull subscription per route, each message POSTed to its
 * function as a structured `messagePublished` CloudEvent, acked on a 2xx answer and nacked otherwise, so Pub/Sub
 * redelivers as it would to a failing function. `deliveryAttempt` is Pub/Sub's where the subscription has a
 * dead-letter policy, else counted here. Tests keep apart by the client's project ID. With `twice`, every message is
 * handed over a second time once the first delivery is answered, as a redelivery, and acked only when both were.
 */
export async function startEventarcRelay(options: { pubsub: PubSub; project: string; routes: readonly RelayRoute[]; twice?: boolean }) {
  const subscriptions: Subscription[] = [];
  const attempts = new Map<string, number>();
  const inFlight = new Set<Promise<void>>();
  const failures: string[] = [];

  async function relay(route: RelayRoute, subscriptionName: string, message: Message): Promise<void> {
    const first = message.deliveryAttempt > 0 ? message.deliveryAttempt : (attempts.get(message.id) ?? 0) + 1;
    attempts.set(message.id, first);
    const post = async (deliveryAttempt: number): Promise<boolean> => {
      const event = messagePublishedEvent({
        project: options.project,
        topic: route.topic,
        subscription: subscriptionName,
        messageId: message.id,
        data: message.data,
        attributes: message.attributes,
        publishedAt: message.publishTime.getTime(),
        deliveryAttempt,
      });
      const response = await fetch(route.url, {
        method: 'POST',
        headers: { 'content-type': 'application/cloudevents+json' },
        body: JSON.stringify(event),
      });
      await response.arrayBuffer();
      if (!response.ok) failures.push(`${route.topic} ${message.id}: HTTP ${response.status}`);
      return response.ok;
    };
    try {
      const answered = (await post(first)) && (options.twice !== true || (await post(first + 1)));
      if (answered) message.ack();
      else message.nack();
    } catch (error) {
      failures.push(`${route.topic} ${message.id}: ${describeError(error)}`);
      message.nack();
    }
  }

  for (const route of options.routes) {
    const name = `${route.topic}-relay`;
    const [topic] = await options.pubsub.topic(route.topic).get({ autoCreate: true });
    const [subscription] = await topic.createSubscription(name, { ackDeadlineSeconds: 60 });
    subscription.on('message', (message: Message) => {
      const work = relay(route, name, message).finally(() => inFlight.delete(work));
      inFlight.add(work);
    });
    subscription.on('error', (error: Error) => failures.push(`${route.topic}: ${error.message}`));
    subscriptions.push(subscription);
  }

  return {
    /** Non-2xx answers and transport errors so far, for a failing test's message. */
    failures,
    /** Stops pulling; messages in flight finish first. */
    async stop(): Promise<void> {
      await Promise.all(subscriptions.map((subscription) => subscription.close()));
      await Promise.all(inFlight);
    },
  };
}
