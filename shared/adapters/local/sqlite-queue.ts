import { randomUUID } from 'node:crypto';
import type { DatabaseSync, SQLOutputValue, StatementSync } from 'node:sqlite';
import type { DeadLetter, Delivery, ExpiredLetter, MessageQueue, SubscriptionOptions } from '../../ports/messages.ts';
import { createPublishListeners } from '../publish-listeners.ts';
import { groupCommitOf } from './group-commit.ts';

export interface SqliteQueueOptions {
  /** The clock for publish times, leases and backoff; Date.now unless a test drives time. */
  now?: () => number;
  /**
   * The opener is the only consumer there is (it holds the data directory's lock), so a lease found in the file was
   * taken by a consumer that died: its message is made due at once rather than at the end of its ack deadline.
   */
  releaseLeases?: boolean;
}

interface Subscription {
  topic: string;
  ackDeadlineMs: number;
  maxAttempts: number;
  minBackoffMs: number;
  maxBackoffMs: number;
}

type Row = Record<string, SQLOutputValue>;

/** The most messages one lease statement takes; a larger pull runs it again. */
const maxLeaseBatch = 100;

/**
 * A durable, at-least-once pull queue in its own tables of the given database, shaped like Pub/Sub: a publish is
 * stored once per subscription of its topic (dropped when there is none), a pull leases due messages until their ack
 * deadline, a nack makes one due again after exponential backoff, and a message that used up its attempts moves to
 * the dead letters with the reason. Messages, leases and dead letters survive closing and reopening the file. The
 * queue does not own `db`: `close()` only makes later calls reject. Every failure rejects the call that caused it.
 */
export function createSqliteQueue(db: DatabaseSync, options: SqliteQueueOptions = {}): MessageQueue {
  const now = options.now ?? Date.now;
  db.exec(`
    CREATE TABLE IF NOT EXISTS queue_subscriptions (
      name TEXT PRIMARY KEY,
      topic TEXT NOT NULL,
      ack_deadline_ms INTEGER NOT NULL,
      max_attempts INTEGER NOT NULL,
      min_backoff_ms INTEGER NOT NULL,
      max_backoff_ms INTEGER NOT NULL,
      created_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS queue_subscriptions_topic ON queue_subscriptions (topic);
    CREATE TABLE IF NOT EXISTS queue_messages (
      seq INTEGER PRIMARY KEY,
      id TEXT NOT NULL,
      subscription TEXT NOT NULL REFERENCES queue_subscriptions (name),
      topic TEXT NOT NULL,
      data BLOB NOT NULL,
      attributes TEXT NOT NULL,
      published_at INTEGER NOT NULL,
      -- When the message may be pulled: its publish time, the end of its backoff, or the end of its lease.
      visible_at INTEGER NOT NULL,
      -- When the current delivery became due; orders a pulled batch.
      due_at INTEGER NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      -- "<seq>:<random>" while leased, so an ack finds its row by primary key; NULL when not leased.
      ack_id TEXT
    );
    CREATE INDEX IF NOT EXISTS queue_messages_due ON queue_messages (subscription, visible_at, seq);
    CREATE TABLE IF NOT EXISTS queue_dead_letters (
      seq INTEGER PRIMARY KEY,
      id TEXT NOT NULL,
      topic TEXT NOT NULL,
      subscription TEXT NOT NULL,
      data BLOB NOT NULL,
      attributes TEXT NOT NULL,
      attempts INTEGER NOT NULL,
      reason TEXT NOT NULL,
      at INTEGER NOT NULL
    );
  `);

  const sql = {
    getSubscription: db.prepare(
      `SELECT topic, ack_deadline_ms, max_attempts, min_backoff_ms, max_backoff_ms
       FROM queue_subscriptions WHERE name = ?`,
    ),
    insertSubscription: db.prepare(
      `INSERT INTO queue_subscriptions
         (name, topic, ack_deadline_ms, max_attempts, min_backoff_ms, max_backoff_ms, created_at)
       VALUES (:name, :topic, :ackDeadlineMs, :maxAttempts, :minBackoffMs, :maxBackoffMs, :now)
       ON CONFLICT (name) DO UPDATE SET
         ack_deadline_ms = excluded.ack_deadline_ms, max_attempts = excluded.max_attempts,
         min_backoff_ms = excluded.min_backoff_ms, max_backoff_ms = excluded.max_backoff_ms`,
    ),
    // One statement fans the message out to every subscription of the topic, atomically.
    publish: db.prepare(
      `INSERT INTO queue_messages (id, subscription, topic, data, attributes, published_at, visible_at, due_at)
       SELECT :id, name, topic, :data, :attributes, :now, :now, :now FROM queue_subscriptions WHERE topic = :topic`,
    ),
    leased: db.prepare('SELECT subscription, attempts FROM queue_messages WHERE seq = ? AND ack_id = ?'),
    ack: db.prepare('DELETE FROM queue_messages WHERE seq = ? AND ack_id = ?'),
    retryAt: db.prepare('UPDATE queue_messages SET visible_at = ?, ack_id = NULL WHERE seq = ?'),
    copyToDeadLetters: db.prepare(
      `INSERT INTO queue_dead_letters (id, topic, subscription, data, attributes, attempts, reason, at)
       SELECT id, topic, subscription, data, attributes, :attempts, :reason, :at FROM queue_messages WHERE seq = :seq`,
    ),
    remove: db.prepare('DELETE FROM queue_messages WHERE seq = ?'),
    record: db.prepare(
      `INSERT INTO queue_dead_letters (id, topic, subscription, data, attributes, attempts, reason, at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    list: db.prepare(
      `SELECT id, topic, subscription, data, attributes, attempts, reason, at
       FROM queue_dead_letters ORDER BY seq DESC LIMIT ?`,
    ),
    backlogAll: db.prepare('SELECT count(*) AS count, min(visible_at) AS next FROM queue_messages'),
    backlogOf: db.prepare(
      'SELECT count(*) AS count, min(visible_at) AS next FROM queue_messages WHERE subscription = ?',
    ),
  };

  // One statement leases a batch: the due messages, oldest due first, each with a fresh ack ID and deadline. The
  // batch size is written into the statement rather than bound: SQLite's planner reads a bound LIMIT, so it
  // re-prepares such a statement at every run, which cost each pull several times its own work. One statement per
  // size, prepared on first use; at most maxLeaseBatch of them.
  const leaseStatements = new Map<number, StatementSync>();
  const leaseUpTo = (limit: number): StatementSync => {
    let statement = leaseStatements.get(limit);
    if (statement === undefined) {
      statement = db.prepare(
        `UPDATE queue_messages
         SET attempts = attempts + 1, due_at = visible_at, visible_at = :until,
             ack_id = seq || ':' || lower(hex(randomblob(12)))
         WHERE seq IN (SELECT seq FROM queue_messages WHERE subscription = :subscription AND visible_at <= :now
                       ORDER BY visible_at, seq LIMIT ${limit})
         RETURNING seq, id, topic, data, attributes, published_at, due_at, attempts, ack_id`,
      );
      leaseStatements.set(limit, statement);
    }
    return statement;
  };

  if (options.releaseLeases === true) {
    db.prepare('UPDATE queue_messages SET visible_at = min(visible_at, ?), ack_id = NULL WHERE ack_id IS NOT NULL').run(now());
  }

  const subscriptions = new Map<string, Subscription>();
  const listeners = createPublishListeners<string>();
  const expired = createPublishListeners<ExpiredLetter>();
  let closed = false;
  const assertOpen = (): void => {
    if (closed) throw new Error('message queue is closed');
  };

  const subscription = (name: string): Subscription => {
    let found = subscriptions.get(name);
    if (found === undefined) {
      const row = sql.getSubscription.get(name);
      if (row === undefined) throw new Error(`unknown subscription ${JSON.stringify(name)}`);
      found = {
        topic: text(row, 'topic'),
        ackDeadlineMs: int(row, 'ack_deadline_ms'),
        maxAttempts: int(row, 'max_attempts'),
        minBackoffMs: int(row, 'min_backoff_ms'),
        maxBackoffMs: int(row, 'max_backoff_ms'),
      };
      subscriptions.set(name, found);
    }
    return found;
  };

  // Publishes, pulls, acks and the rest join the connection's group commit (see group-commit.ts): a burst of them
  // costs one journal write instead of one each, and each call resolves once its write is durable.
  const group = groupCommitOf(db);

  const moveToDeadLetters = (seq: number, attempts: number, reason: string): void => {
    sql.copyToDeadLetters.run({ seq, attempts, reason, at: now() });
    sql.remove.run(seq);
  };

  /** The leased row a delivery names, or undefined when its ack ID is stale. Call inside a group write. */
  const leasedRow = (delivery: Delivery): { seq: number; subscription: string; attempts: number } | undefined => {
    const seq = seqOfAckId(delivery.ackId);
    if (seq === undefined) return undefined;
    const row = sql.leased.get(seq, delivery.ackId);
    if (row === undefined) return undefined;
    return { seq, subscription: text(row, 'subscription'), attempts: int(row, 'attempts') };
  };

  return {
    async subscribe(topic: string, name: string, options: SubscriptionOptions): Promise<void> {
      assertOpen();
      checkName('topic', topic);
      checkName('subscription', name);
      checkOptions(name, options);
      await group.write(() => {
        const existing = sql.getSubscription.get(name);
        if (existing !== undefined && text(existing, 'topic') !== topic) {
          throw new Error(`subscription ${name} already exists on topic ${text(existing, 'topic')}, not ${topic}`);
        }
        sql.insertSubscription.run({ name, topic, ...pickOptions(options), now: now() });
      });
      subscriptions.set(name, { topic, ...pickOptions(options) });
    },

    async publish(topic: string, data: Uint8Array, attributes: Record<string, string> = {}): Promise<string> {
      assertOpen();
      checkName('topic', topic);
      if (!(data instanceof Uint8Array)) throw new Error(`publish to ${topic}: data must be a Uint8Array`);
      const id = randomUUID();
      // A copy: the row is written at the group commit, after the caller may have reused its buffer.
      const row = { id, topic, data: data.slice(), attributes: encodeAttributes(topic, attributes) };
      await group.write(() => sql.publish.run({ ...row, now: now() }));
      listeners.notify(topic);
      return id;
    },

    async pull(name: string, max: number): Promise<Delivery[]> {
      assertOpen();
      if (!Number.isSafeInteger(max) || max < 0) {
        throw new Error(`pull from ${name}: max must be a whole number, got ${max}`);
      }
      const sub = subscription(name);
      if (max === 0) return [];
      const expiredNow: ExpiredLetter[] = [];
      const deliveries = await group.write(() => {
        const pulled: { dueAt: number; seq: number; delivery: Delivery }[] = [];
        const at = now();
        let want = max;
        while (want > 0) {
          const limit = Math.min(want, maxLeaseBatch);
          const rows = leaseUpTo(limit).all({ subscription: name, now: at, until: at + sub.ackDeadlineMs });
          for (const row of rows) {
            const attempts = int(row, 'attempts');
            const seq = int(row, 'seq');
            if (attempts > sub.maxAttempts) {
              // Its last lease ran out with no ack: it used up its attempts without a word from the handler.
              const used = attempts - 1;
              const reason = `ack deadline exceeded ${used} times`;
              moveToDeadLetters(seq, used, reason);
              expiredNow.push({ topic: text(row, 'topic'), subscription: name, data: bytes(row, 'data'), attributes: decodeAttributes(text(row, 'attributes')), attempts: used, reason });
              continue;
            }
            want--;
            pulled.push({
              dueAt: int(row, 'due_at'),
              seq,
              delivery: {
                messageId: text(row, 'id'),
                ackId: text(row, 'ack_id'),
                topic: text(row, 'topic'),
                subscription: name,
                data: bytes(row, 'data'),
                attributes: decodeAttributes(text(row, 'attributes')),
                attempt: attempts,
                publishedAt: int(row, 'published_at'),
              },
            });
          }
          // A short batch means nothing more is due; a full one may leave more (or had dead-lettered rows).
          if (rows.length < limit) break;
        }
        // RETURNING gives rows in no promised order.
        pulled.sort((a, b) => a.dueAt - b.dueAt || a.seq - b.seq);
        return pulled.map((entry) => entry.delivery);
      });
      for (const letter of expiredNow) expired.notify(letter);
      return deliveries;
    },

    async ack(delivery: Delivery): Promise<void> {
      assertOpen();
      const seq = seqOfAckId(delivery.ackId);
      if (seq !== undefined) await group.write(() => sql.ack.run(seq, delivery.ackId));
    },

    async nack(delivery: Delivery, reason: string, retryAfterMs = 0): Promise<void> {
      assertOpen();
      await group.write(() => {
        const row = leasedRow(delivery);
        if (row === undefined) return;
        const sub = subscription(row.subscription);
        if (row.attempts >= sub.maxAttempts) {
          moveToDeadLetters(row.seq, row.attempts, reason);
        } else {
          sql.retryAt.run(now() + Math.max(retryAfterMs, backoff(sub, row.attempts)), row.seq);
        }
      });
    },

    async deadLetter(delivery: Delivery, reason: string): Promise<void> {
      assertOpen();
      await group.write(() => {
        const row = leasedRow(delivery);
        if (row !== undefined) moveToDeadLetters(row.seq, row.attempts, reason);
      });
    },

    async record(letter: Omit<DeadLetter, 'id' | 'at'>): Promise<void> {
      assertOpen();
      const attributes = encodeAttributes(letter.topic, letter.attributes);
      const id = randomUUID();
      await group.write(() =>
        sql.record.run(id, letter.topic, letter.subscription, letter.data, attributes, letter.attempts, letter.reason, now()),
      );
    },

    async list(limit = 100): Promise<DeadLetter[]> {
      assertOpen();
      if (!Number.isSafeInteger(limit) || limit < 0) {
        throw new Error(`dead letters: limit must be a whole number, got ${limit}`);
      }
      const rows = await group.read(() => sql.list.all(limit));
      return rows.map((row) => ({
        id: text(row, 'id'),
        topic: text(row, 'topic'),
        subscription: text(row, 'subscription'),
        data: bytes(row, 'data'),
        attributes: decodeAttributes(text(row, 'attributes')),
        attempts: int(row, 'attempts'),
        reason: text(row, 'reason'),
        at: int(row, 'at'),
      }));
    },

    async backlog(name?: string): Promise<{ count: number; nextDueAt: number | undefined }> {
      assertOpen();
      const row = await group.read(() => (name === undefined ? sql.backlogAll.get() : sql.backlogOf.get(name)));
      const next = row?.['next'];
      return {
        count: row === undefined ? 0 : int(row, 'count'),
        nextDueAt: typeof next === 'number' ? next : undefined,
      };
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

/** Redelivery delay after the given attempt failed: minBackoffMs doubled per earlier attempt, capped. */
function backoff(sub: Subscription, attempt: number): number {
  return Math.min(sub.maxBackoffMs, sub.minBackoffMs * 2 ** (attempt - 1));
}

function seqOfAckId(ackId: string): number | undefined {
  if (typeof ackId !== 'string') return undefined;
  const colon = ackId.indexOf(':');
  const seq = colon > 0 ? Number(ackId.slice(0, colon)) : Number.NaN;
  return Number.isSafeInteger(seq) ? seq : undefined;
}

function checkName(kind: string, name: string): void {
  if (typeof name !== 'string' || name === '') throw new Error(`${kind} name must be a non-empty string`);
}

function pickOptions(options: SubscriptionOptions): Omit<Subscription, 'topic'> {
  return {
    ackDeadlineMs: options.ackDeadlineMs,
    maxAttempts: options.maxAttempts,
    minBackoffMs: options.minBackoffMs,
    maxBackoffMs: options.maxBackoffMs,
  };
}

function checkOptions(name: string, options: SubscriptionOptions): void {
  const whole = (value: number, min: number): boolean => Number.isSafeInteger(value) && value >= min;
  if (
    !whole(options.ackDeadlineMs, 1) ||
    !whole(options.maxAttempts, 1) ||
    !whole(options.minBackoffMs, 0) ||
    !whole(options.maxBackoffMs, options.minBackoffMs)
  ) {
    throw new Error(
      `subscription ${name}: ackDeadlineMs >= 1, maxAttempts >= 1 and 0 <= minBackoffMs <= maxBackoffMs, ` +
        `all whole numbers; got ${JSON.stringify(options)}`,
    );
  }
}

function encodeAttributes(topic: string, attributes: Record<string, string>): string {
  for (const [key, value] of Object.entries(attributes)) {
    if (typeof value !== 'string') throw new Error(`publish to ${topic}: attribute ${key} must be a string`);
  }
  return JSON.stringify(attributes);
}

function decodeAttributes(json: string): Record<string, string> {
  const value: unknown = JSON.parse(json);
  const attributes: Record<string, string> = {};
  if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) if (typeof item === 'string') attributes[key] = item;
  }
  return attributes;
}

function text(row: Row, column: string): string {
  const value = row[column];
  if (typeof value !== 'string') throw new Error(`queue row: ${column} is ${typeof value}, not text`);
  return value;
}

function int(row: Row, column: string): number {
  const value = row[column];
  if (typeof value !== 'number') throw new Error(`queue row: ${column} is ${typeof value}, not a number`);
  return value;
}

function bytes(row: Row, column: string): Uint8Array {
  const value = row[column];
  if (!(value instanceof Uint8Array)) throw new Error(`queue row: ${column} is ${typeof value}, not bytes`);
  return value;
}
