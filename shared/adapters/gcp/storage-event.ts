import { PermanentError } from '../../errors.ts';

/**
 * Cloud Storage `google.cloud.storage.object.v1.finalized` CloudEvents, as Eventarc delivers them to a function. The
 * event's data is the object's resource (StorageObjectData, the JSON API's object): `bucket`, `name`, `generation`,
 * `size`, `contentType`, `metageneration`, `timeCreated`, `md5Hash`, `crc32c`, ... The 64-bit fields come as decimal
 * strings on the wire (proto3 JSON), though some tools send numbers; both are read.
 */

/** The CloudEvent type of a new object or a new generation of one. */
export const STORAGE_FINALIZED_TYPE = 'google.cloud.storage.object.v1.finalized';

/** What `collect` needs of a finalized object. */
export interface FinalizedObject {
  bucket: string;
  /** The object's name: the blob key. */
  key: string;
  /** Decimal string: generations are 64-bit and only ever compared for equality. */
  generation: string;
  size: number;
}

/**
 * Reads a finalized event's data. Throws a PermanentError naming every missing or malformed field: a redelivery
 * would carry the same data.
 */
export function parseStorageFinalized(data: unknown): FinalizedObject {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new PermanentError(`storage event data is not an object: ${describe(data)}`);
  }
  const fields = data as Record<string, unknown>;
  const problems: string[] = [];
  const text = (name: string): string => {
    const value = fields[name];
    if (typeof value === 'string' && value !== '') return value;
    problems.push(value === undefined ? `${name} is missing` : `${name} is not a non-empty string (${describe(value)})`);
    return '';
  };
  const integer = (name: string): string => {
    const value = fields[name];
    if (typeof value === 'string' && /^(0|[1-9]\d{0,18})$/.test(value)) return value;
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
    problems.push(value === undefined ? `${name} is missing` : `${name} is not a non-negative integer (${describe(value)})`);
    return '0';
  };
  const bucket = text('bucket');
  const key = text('name');
  const generation = integer('generation');
  const size = Number(integer('size'));
  if (!Number.isSafeInteger(size)) problems.push(`size ${describe(fields.size)} is too large`);
  if (problems.length > 0) throw new PermanentError(`storage finalized event: ${problems.join('; ')}`);
  return { bucket, key, generation, size };
}

/** A CloudEvent in Eventarc's shape, as a test or the local runtime would hand it to a function. */
export interface StorageCloudEvent {
  specversion: '1.0';
  id: string;
  type: typeof STORAGE_FINALIZED_TYPE;
  source: string;
  subject: string;
  time: string;
  datacontenttype: 'application/json';
  data: Record<string, unknown>;
}

/** Builds a finalized event for tests, with the fields GCS sends; `data` overrides or removes (undefined) any of them. */
export function storageFinalizedEvent(options: {
  bucket: string;
  name: string;
  size: number;
  generation?: string;
  contentType?: string;
  time?: Date;
  data?: Record<string, unknown>;
}): StorageCloudEvent {
  const time = (options.time ?? new Date()).toISOString();
  const generation = options.generation ?? String(Date.parse(time) * 1000);
  const object = `${options.bucket}/${options.name}/${generation}`;
  const data: Record<string, unknown> = {
    kind: 'storage#object',
    id: object,
    selfLink: `https://www.googleapis.com/storage/v1/b/${options.bucket}/o/${encodeURIComponent(options.name)}`,
    name: options.name,
    bucket: options.bucket,
    generation,
    metageneration: '1',
    contentType: options.contentType ?? 'application/octet-stream',
    timeCreated: time,
    updated: time,
    storageClass: 'STANDARD',
    timeStorageClassUpdated: time,
    size: String(options.size),
    mediaLink: `https://storage.googleapis.com/download/storage/v1/b/${options.bucket}/o/${encodeURIComponent(options.name)}?generation=${generation}&alt=media`,
  };
  for (const [field, value] of Object.entries(options.data ?? {})) {
    if (value === undefined) delete data[field];
    else data[field] = value;
  }
  return {
    specversion: '1.0',
    id: `${generation}-${options.name}`,
    type: STORAGE_FINALIZED_TYPE,
    source: `//storage.googleapis.com/projects/_/buckets/${options.bucket}`,
    subject: `objects/${options.name}`,
    time,
    datacontenttype: 'application/json',
    data,
  };
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
