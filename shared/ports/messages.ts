/**
 * The messages port. Handlers only publish; delivery is the runtime's business (Pub/Sub pushes to Cloud Functions;
 * the embedded queue is pulled by the local dispatcher). Delivery is at least once: twice, late, out of order.
 */

export interface Publisher {
  /** Publishes bytes to a topic; resolves with the message ID once the message is durable. */
  publish(topic: string, data: Uint8Array, attributes?: Record<string, string>): Promise<string>;
}

/** A message that could not be handled, kept with the reason. */
export interface DeadLetter {
  id: string;
  topic: string;
  subscription: string;
  data: Uint8Array;
  attributes: Record<string, string>;
  attempts: number;
  reason: string;
  at: number;
}

/** A message moved to the dead letters because its last lease ran out. */
export type ExpiredLetter = Omit<DeadLetter, 'id' | 'at'>;

export interface DeadLetters {
  /** Keeps a message that can never be handled, with the reason. */
  record(letter: Omit<DeadLetter, 'id' | 'at'>): Promise<void>;
  /** Newest first. */
  list(limit?: number): Promise<DeadLetter[]>;
}

export interface SubscriptionOptions {
  /** A pulled message not acked within this is delivered again. */
  ackDeadlineMs: number;
  /** Deliveries before a message goes to the dead letters. */
  maxAttempts: number;
  /** Redelivery after a nack waits minBackoffMs * 2^(attempt-1), capped at maxBackoffMs. */
  minBackoffMs: number;
  maxBackoffMs: number;
}

export interface Delivery {
  messageId: string;
  /** Identifies this delivery; an ack or nack with a stale one (the deadline passed) does nothing. */
  ackId: string;
  topic: string;
  subscription: string;
  data: Uint8Array;
  attributes: Record<string, string>;
  /** 1 on first delivery. */
  attempt: number;
  publishedAt: number;
}

/** A pull queue with subscriptions, as the embedded runtime needs and Pub/Sub pull subscriptions provide. */
export interface MessageQueue extends Publisher, DeadLetters {
  /** Creates the subscription if it does not exist; messages published after this reach it. */
  subscribe(topic: string, subscription: string, options: SubscriptionOptions): Promise<void>;
  /** Up to `max` messages whose time has come, each leased until its ack deadline. */
  pull(subscription: string, max: number): Promise<Delivery[]>;
  /** Done with; never delivered again. */
  ack(delivery: Delivery): Promise<void>;
  /**
   * Deliver again after backoff, and no sooner than `retryAfterMs` from now when given (a rate limit's reset, say);
   * past maxAttempts, into the dead letters with `reason`.
   */
  nack(delivery: Delivery, reason: string, retryAfterMs?: number): Promise<void>;
  /** Into the dead letters now, with `reason`. */
  deadLetter(delivery: Delivery, reason: string): Promise<void>;
  /** Messages not yet acked or dead-lettered, and when the earliest of them is due (ms since the epoch). */
  backlog(subscription?: string): Promise<{ count: number; nextDueAt: number | undefined }>;
  /** Calls `listener` after each publish through this object, so a dispatcher can wake at once. */
  onPublish(listener: (topic: string) => void): () => void;
  /**
   * Calls `listener` once a message whose last lease ran out unanswered (its handler hung or its runtime died on the
   * last attempt) is in the dead letters, so the runtime can record what its handler would have on giving up.
   * Returns the listener's remover.
   */
  onExpired(listener: (letter: ExpiredLetter) => void): () => void;
  close(): Promise<void>;
}
