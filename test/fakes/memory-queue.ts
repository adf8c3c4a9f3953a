import { randomUUID } from 'node:crypto';
import { createPublishListeners } from '../../shared/adapters/publish-listeners.ts';
import type { DeadLetter, Delivery, ExpiredLetter, MessageQueue, SubscriptionOptions } from '../../shared/ports/messages.ts';

export interface MemoryQueueOptions {
  /** The clock for publish times, leases and backoff; Date.now unless a test drives time. */
  now?: () => number;
}

interface Message {
  seq: number;
  id: string;
  topic: string;
  data: Uint8Array;
  attributes: Record<string, string>;
  publishedAt: number;
  visibleAt: number;
  attempts: number;
  ackId: string | undefined;
}

interface Subscription extends SubscriptionOptions {
  topic: string;
  messages: Map<number, Message>;
}

/**
 * An in-memory message queue with the SQLite adapter's semantics: fan-out per subscription, leases with ack
 * deadlines, nack backoff, dead letters after maxAttempts (also for leases that ran out), stale ack IDs ignored.
 */
export function createMemoryQueue(options: MemoryQueueOptions = {}): MessageQueue {
  const now = options.now ?? Date.now;
  const subscriptions = new Map<string, Subscription>();
  const deadLetters: DeadLetter[] = [];
  const listeners = createPublishListeners<string>();
  const expired = createPublishListeners<ExpiredLetter>();
  let nextSeq = 1;
  let closed = false;
  const assertOpen = (): void => {
    if (closed) throw new Error('message queue is closed');
  };

  const subscriptionOf = (name: string): Subscription => {
    const found = subscriptions.get(name);
    if (found === undefined) throw new Error(`unknown subscription ${JSON.stringify(name)}`);
    return found;
  };

  const moveToDeadLetters = (
    name: string,
    sub: Subscription,
    message: Message,
    attempts: number,
    reason: string,
  ): void => {
    sub.messages.delete(message.seq);
    deadLetters.push({
      id: message.id,
      topic: message.topic,
      subscription: name,
      data: new Uint8Array(message.data),
      attributes: { ...message.attributes },
      attempts,
      reason,
      at: now(),
    });
  };

  /** The leased message a delivery names, or undefined when its ack ID is stale. */
  const leased = (delivery: Delivery): { sub: Subscription; message: Message } | undefined => {
    const sub = subscriptions.get(delivery.subscription);
    const message = sub?.messages.get(Number.parseInt(String(delivery.ackId), 10));
    if (sub === undefined || message?.ackId === undefined || message.ackId !== delivery.ackId) return undefined;
    return { sub, message };
  };

  return {
    async subscribe(topic: string, name: string, options: SubscriptionOptions): Promise<void> {
      assertOpen();
      if (topic === '' || name === '') throw new Error('topic and subscription names must be non-empty');
      const { ackDeadlineMs, maxAttempts, minBackoffMs, maxBackoffMs } = options;
      const whole = (value: number, min: number): boolean => Number.isSafeInteger(value) && value >= min;
      const valid =
        whole(ackDeadlineMs, 1) && whole(maxAttempts, 1) && whole(minBackoffMs, 0) && whole(maxBackoffMs, minBackoffMs);
      if (!valid) {
        throw new Error(`subscription ${name}: invalid options ${JSON.stringify(options)}`);
      }
      const existing = subscriptions.get(name);
      if (existing !== undefined && existing.topic !== topic) {
        throw new Error(`subscription ${name} already exists on topic ${existing.topic}, not ${topic}`);
      }
      subscriptions.set(name, {
        topic,
        ackDeadlineMs,
        maxAttempts,
        minBackoffMs,
        maxBackoffMs,
        messages: existing?.messages ?? new Map(),
      });
    },

    async publish(topic: string, data: Uint8Array, attributes: Record<string, string> = {}): Promise<string> {
      assertOpen();
      if (topic === '') throw new Error('topic name must be non-empty');
      if (!(data instanceof Uint8Array)) throw new Error(`publish to ${topic}: data must be a Uint8Array`);
      for (const [key, value] of Object.entries(attributes)) {
        if (typeof value !== 'string') throw new Error(`publish to ${topic}: attribute ${key} must be a string`);
      }
      const id = randomUUID();
      const at = now();
      for (const sub of subscriptions.values()) {
        if (sub.topic !== topic) continue;
        const seq = nextSeq++;
        sub.messages.set(seq, {
          seq,
          id,
          topic,
          data: new Uint8Array(data),
          attributes: { ...attributes },
          publishedAt: at,
          visibleAt: at,
          attempts: 0,
          ackId: undefined,
        });
      }
      listeners.notify(topic);
      return id;
    },

    async pull(name: string, max: number): Promise<Delivery[]> {
      assertOpen();
      if (!Number.isSafeInteger(max) || max < 0) {
        throw new Error(`pull from ${name}: max must be a whole number, got ${max}`);
      }
      const sub = subscriptionOf(name);
      const at = now();
      const due = [...sub.messages.values()]
        .filter((message) => message.visibleAt <= at)
        .sort((a, b) => a.visibleAt - b.visibleAt || a.seq - b.seq);
      const deliveries: Delivery[] = [];
      const expiredNow: ExpiredLetter[] = [];
      for (const message of due) {
        if (deliveries.length >= max) break;
        if (message.attempts >= sub.maxAttempts) {
          const reason = `ack deadline exceeded ${message.attempts} times`;
          moveToDeadLetters(name, sub, message, message.attempts, reason);
          expiredNow.push({ topic: message.topic, subscription: name, data: new Uint8Array(message.data), attributes: { ...message.attributes }, attempts: message.attempts, reason });
          continue;
        }
        message.attempts++;
        message.ackId = `${message.seq}:${randomUUID()}`;
        message.visibleAt = at + sub.ackDeadlineMs;
        deliveries.push({
          messageId: message.id,
          ackId: message.ackId,
          topic: message.topic,
          subscription: name,
          data: new Uint8Array(message.data),
          attributes: { ...message.attributes },
          attempt: message.attempts,
          publishedAt: message.publishedAt,
        });
      }
      for (const letter of expiredNow) expired.notify(letter);
      return deliveries;
    },

    async ack(delivery: Delivery): Promise<void> {
      assertOpen();
      const found = leased(delivery);
      found?.sub.messages.delete(found.message.seq);
    },

    async nack(delivery: Delivery, reason: string, retryAfterMs = 0): Promise<void> {
      assertOpen();
      const found = leased(delivery);
      if (found === undefined) return;
      const { sub, message } = found;
      if (message.attempts >= sub.maxAttempts) {
        moveToDeadLetters(delivery.subscription, sub, message, message.attempts, reason);
        return;
      }
      message.ackId = undefined;
      message.visibleAt = now() + Math.max(retryAfterMs, Math.min(sub.maxBackoffMs, sub.minBackoffMs * 2 ** (message.attempts - 1)));
    },

    async deadLetter(delivery: Delivery, reason: string): Promise<void> {
      assertOpen();
      const found = leased(delivery);
      if (found === undefined) return;
      moveToDeadLetters(delivery.subscription, found.sub, found.message, found.message.attempts, reason);
    },

    async record(letter: Omit<DeadLetter, 'id' | 'at'>): Promise<void> {
      assertOpen();
      deadLetters.push({
        ...letter,
        data: new Uint8Array(letter.data),
        attributes: { ...letter.attributes },
        id: randomUUID(),
        at: now(),
      });
    },

    async list(limit = 100): Promise<DeadLetter[]> {
      assertOpen();
      if (!Number.isSafeInteger(limit) || limit < 0) {
        throw new Error(`dead letters: limit must be a whole number, got ${limit}`);
      }
      return deadLetters
        .slice()
        .reverse()
        .slice(0, limit)
        .map((letter) => ({ ...letter, data: new Uint8Array(letter.data), attributes: { ...letter.attributes } }));
    },

    async backlog(name?: string): Promise<{ count: number; nextDueAt: number | undefined }> {
      assertOpen();
      let count = 0;
      let nextDueAt: number | undefined;
      for (const [subName, sub] of subscriptions) {
        if (name !== undefined && subName !== name) continue;
        for (const message of sub.messages.values()) {
          count++;
          if (nextDueAt === undefined || message.visibleAt < nextDueAt) nextDueAt = message.visibleAt;
        }
      }
      return { count, nextDueAt };
    },

    onPublish(listener: (topic: string) => void): () => void {
      return listeners.add(listener);
    },

    onExpired(listener: (letter: ExpiredLetter) => void): () => void {
      return expired.add(listener);
    },

    async close(): Promise<void> {
      closed = true;
    },
  };
}
