/** The blobs port: source tarballs, logs and results, handed to workers only as signed, expiring URLs. */

import { RetryableError } from '../core/errors.ts';

export interface SignOptions {
  method: 'GET' | 'PUT';
  /** ms since the epoch. */
  expiresAt: number;
  /** For PUT: the largest body the URL accepts. */
  maxBytes?: number;
}

export interface BlobStore {
  /** Writes a whole object; readers see the old object or the new one, never part of one. */
  put(key: string, data: Uint8Array | string): Promise<void>;
  /** Streams a whole object in; nothing is visible until the stream ends. Rejects past `maxBytes`, writing nothing. */
  putStream(key: string, source: AsyncIterable<Uint8Array>, options?: { maxBytes?: number }): Promise<{ bytes: number }>;
  /** The object's bytes, or undefined when there is none. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** The object as a stream, or undefined when there is none. */
  getStream(key: string): Promise<AsyncIterable<Uint8Array> | undefined>;
  exists(key: string): Promise<boolean>;
  /** Keys under a prefix, sorted. */
  list(prefix: string): Promise<string[]>;
  delete(key: string): Promise<void>;
  /** A URL that lets its holder do one kind of request to one object until it expires, and nothing else. */
  signUrl(key: string, options: SignOptions): Promise<string>;
}

/**
 * A write the store refused for want of room (its disk is full): the message names the object and what is left.
 * Retryable, as space may be freed; an HTTP front answers it with 507 Insufficient Storage.
 */
export class StoreFullError extends RetryableError {
  override name = 'StoreFullError';
}

/** Throws unless `key` is a plain relative object name: no empty, `.` or `..` segment, no odd characters. */
export function assertBlobKey(key: string): void {
  const ok =
    key.length > 0 &&
    key.length <= 1024 &&
    /^[A-Za-z0-9._\-/]+$/.test(key) &&
    key.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..');
  if (!ok) throw new Error(`invalid blob key ${JSON.stringify(key)}`);
}

/** Throws unless the options can be signed: GET or PUT, an expiry in whole ms, a limit in whole bytes. */
export function assertSignOptions(options: SignOptions): void {
  if (options.method !== 'GET' && options.method !== 'PUT') throw new Error(`cannot sign method ${String(options.method)}`);
  if (!Number.isSafeInteger(options.expiresAt) || options.expiresAt < 0) {
    throw new Error(`expiresAt must be a non-negative integer of ms, got ${options.expiresAt}`);
  }
  if (options.maxBytes !== undefined && (!Number.isSafeInteger(options.maxBytes) || options.maxBytes < 0)) {
    throw new Error(`maxBytes must be a non-negative integer, got ${options.maxBytes}`);
  }
}
