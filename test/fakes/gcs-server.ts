import { createHash, createPublicKey, createVerify, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { CRC32C } from '@google-cloud/storage';
import { FakeApiError, googleErrorBody } from './api-error.ts';
import { listenForTests, sendJson } from './http.ts';

/**
 * A fake Cloud Storage on node:http, for the real `@google-cloud/storage` client (pointed at it with `apiEndpoint`)
 * and for V4 signed URLs. It serves the JSON API paths the client uses (objects insert: media, multipart and
 * resumable; get media; get metadata; list with prefix and pageToken; delete) and the XML API paths signed URLs hit
 * (GET, PUT, and POST with `x-goog-resumable: start` followed by PUTs to the session URI). Signatures are checked for
 * real against a service account's public key. Objects live in memory, each write a new generation; a download
 * holds the generation it started with, so a replace never changes the bytes of a read in flight.
 *
 * The JSON API is not authenticated: the client skips auth for a custom endpoint unless `useAuthWithCustomEndpoint`.
 */

/** An object's resource, as the JSON API returns it and as a Storage `object.finalized` event carries it. */
export interface FakeObjectResource {
  kind: 'storage#object';
  id: string;
  selfLink: string;
  mediaLink: string;
  name: string;
  bucket: string;
  generation: string;
  metageneration: string;
  contentType: string;
  storageClass: 'STANDARD';
  size: string;
  md5Hash: string;
  crc32c: string;
  etag: string;
  timeCreated: string;
  updated: string;
}

/** What the fake serves and whom it trusts, and the hooks tests watch it through. */
export interface FakeGcsOptions {
  /** Buckets that exist; requests to others get 404. */
  buckets: readonly string[];
  /** Where to listen (default 127.0.0.1; a container network's gateway, for workers in containers). */
  host?: string;
  /** The only signer whose V4 signatures are accepted. */
  serviceAccount: { clientEmail: string; publicKey: KeyObject | string };
  /** ms since the epoch, for signed URL expiry; injectable so tests can expire URLs without waiting. */
  now?: () => number;
  /** Most items in one list page when the request names no `maxResults`; GCS's own default is 1000. */
  pageSize?: number;
  /** Called after each object is written and answered, as a Storage `object.finalized` event would be sent. */
  onFinalized?: (object: FakeObjectResource) => void;
  /** Called with each piece of an upload body the server reads, before the object exists. */
  onUploadData?: (bucket: string, name: string, bytes: number) => void;
  /** Fault injection: true cuts the connection of a session upload once it holds `held` bytes of object `name`. */
  cutSessionUpload?: (name: string, held: number) => boolean;
  /** Sees failures answered with a 500; a throwing hook lands here too. */
  onError?: (error: Error) => void;
}

/** A running fake. */
export interface FakeGcs {
  /** `http://HOST:PORT`: the client's `apiEndpoint`, and the origin of signed URLs. */
  url: string;
  /** The current generation of an object, or undefined. */
  object(bucket: string, name: string): { resource: FakeObjectResource; data: Buffer } | undefined;
  /** Upload sessions not yet finished or cancelled. */
  openSessions(): number;
  /** Body bytes that PUTs to upload sessions carried, resent ones included. */
  sessionBytes(): number;
  /** Requests served, by a short label ("json:list", "xml:put", ...): lets tests see which path the client took. */
  requests: string[];
  close(): Promise<void>;
}

/** A fresh RSA service-account key, in the shape of a downloaded key file's credentials. */
export function createTestServiceAccount(clientEmail = 'hermetic-test@test-project.iam.gserviceaccount.com'): {
  clientEmail: string;
  privateKeyPem: string;
  publicKey: KeyObject;
  credentials: { client_email: string; private_key: string };
} {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  return { clientEmail, privateKeyPem, publicKey, credentials: { client_email: clientEmail, private_key: privateKeyPem } };
}

interface Stored {
  resource: FakeObjectResource;
  data: Buffer;
}

interface Session {
  bucket: string;
  name: string;
  contentType: string;
  parts: Buffer[];
  received: number;
  /** From a signed `x-goog-content-length-range` on the start request: the whole object must fit. */
  range: { min: number; max: number } | undefined;
  xml: boolean;
}


const SEVEN_DAYS_S = 7 * 24 * 3600;
const CLOCK_SKEW_MS = 15 * 60_000;

/** Starts the fake on a free port of 127.0.0.1. */
export async function startFakeGcs(options: FakeGcsOptions): Promise<FakeGcs> {
  const now = options.now ?? Date.now;
  const pageSize = options.pageSize ?? 1000;
  const publicKey =
    typeof options.serviceAccount.publicKey === 'string' ? createPublicKey(options.serviceAccount.publicKey) : options.serviceAccount.publicKey;
  const buckets = new Map<string, Map<string, Stored>>(options.buckets.map((name) => [name, new Map()]));
  const sessions = new Map<string, Session>();
  const requests: string[] = [];
  let sessionBytes = 0;
  let lastGeneration = 0;
  let origin = '';

  const report = (error: unknown): void => {
    try {
      options.onError?.(error instanceof Error ? error : new Error(String(error)));
    } catch {
      // A failing hook must not break the server.
    }
  };

  const bucketOf = (name: string): Map<string, Stored> => {
    const bucket = buckets.get(name);
    if (bucket === undefined) throw new FakeApiError(404, 'NoSuchBucket', `bucket ${name} not found`);
    return bucket;
  };

  /** Stores a new generation and returns it; the event fires once the answer is sent. */
  const finalize = (bucketName: string, name: string, data: Buffer, contentType: string): Stored => {
    const bucket = bucketOf(bucketName);
    // Microseconds, like GCS, and strictly increasing so two writes in one ms still differ.
    lastGeneration = Math.max(lastGeneration + 1, Date.now() * 1000);
    const generation = String(lastGeneration);
    const time = new Date().toISOString();
    const md5Hash = createHash('md5').update(data).digest('base64');
    const crc32c = crc32cOf(data);
    const path = `b/${bucketName}/o/${encodeURIComponent(name)}`;
    const resource: FakeObjectResource = {
      kind: 'storage#object',
      id: `${bucketName}/${name}/${generation}`,
      selfLink: `${origin}/storage/v1/${path}`,
      mediaLink: `${origin}/download/storage/v1/${path}?generation=${generation}&alt=media`,
      name,
      bucket: bucketName,
      generation,
      metageneration: '1',
      contentType,
      storageClass: 'STANDARD',
      size: String(data.byteLength),
      md5Hash,
      crc32c,
      etag: createHash('md5').update(generation).digest('base64').slice(0, 12),
      timeCreated: time,
      updated: time,
    };
    const stored = { resource, data };
    bucket.set(name, stored);
    return stored;
  };

  const announce = (stored: Stored): void => {
    try {
      options.onFinalized?.(stored.resource);
    } catch (error) {
      report(error);
    }
  };

  /** Reads the whole body, telling onUploadData of each piece; rejects when the client goes away first. */
  const readBody = async (req: IncomingMessage, target?: { bucket: string; name: string }, limit?: number): Promise<Buffer> => {
    const parts: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of req) {
      const piece = chunk as Buffer;
      bytes += piece.byteLength;
      if (limit !== undefined && bytes > limit) throw new FakeApiError(400, 'EntityTooLarge', 'Your proposed upload is larger than the maximum object size specified in your policy.');
      if (target !== undefined) options.onUploadData?.(target.bucket, target.name, piece.byteLength);
      parts.push(piece);
    }
    // `for await` ends quietly when the client aborts mid-body; only a completed message counts.
    if (!req.complete) throw new Error('client went away before the body ended');
    return Buffer.concat(parts);
  };

  const objectHeaders = (stored: Stored): Record<string, string> => ({
    'content-type': stored.resource.contentType,
    'content-length': String(stored.data.byteLength),
    'x-goog-generation': stored.resource.generation,
    'x-goog-metageneration': stored.resource.metageneration,
    'x-goog-stored-content-encoding': 'identity',
    'x-goog-stored-content-length': String(stored.data.byteLength),
    'x-goog-hash': `crc32c=${stored.resource.crc32c},md5=${stored.resource.md5Hash}`,
    etag: stored.resource.etag,
  });

  const sendMedia = (res: ServerResponse, stored: Stored): void => {
    res.writeHead(200, objectHeaders(stored));
    // The Buffer of this generation is never changed: a replace makes a new one, so this read stays whole.
    res.end(stored.data);
  };

  // ---------------------------------------------------------------- upload sessions (JSON and XML alike)

  const openSession = (session: Session): string => {
    const id = randomBytes(16).toString('hex');
    sessions.set(id, session);
    return id;
  };

  /**
   * One PUT to a session. `Content-Range: bytes A-B/T` (or `*` for B or T) appends; `bytes *\/T` asks for status.
   * The object is made when the total is known and all of it has arrived, or when a `A-*\/*` body ends; until
   * then nothing is visible, whatever the session holds.
   */
  const sessionPut = async (req: IncomingMessage, res: ServerResponse, id: string): Promise<void> => {
    const session = sessions.get(id);
    if (session === undefined) throw new FakeApiError(404, 'NoSuchUpload', 'no such upload session');
    const range = parseContentRange(req.headers['content-range']);
    const start = range.start ?? session.received;
    if (!range.query && start > session.received) {
      throw new FakeApiError(400, 'InvalidArgument', `upload starts at ${start}, past the ${session.received} bytes received`);
    }
    // Bytes the session already holds are skipped, as GCS does when a client resends after a lost answer.
    let skip = range.query ? 0 : session.received - start;
    let queryBytes = 0;
    // Each piece is kept as it arrives, like GCS persisting a session: a request cut midway leaves its bytes there.
    for await (const chunk of req) {
      let piece = chunk as Buffer;
      sessionBytes += piece.byteLength;
      if (range.query) {
        queryBytes += piece.byteLength;
        continue;
      }
      if (skip > 0) {
        const dropped = Math.min(skip, piece.byteLength);
        piece = piece.subarray(dropped);
        skip -= dropped;
      }
      if (piece.byteLength === 0) continue;
      // A signed size cap holds for the whole object, so a body that takes the session past it ends the session.
      if (session.range !== undefined && session.received + piece.byteLength > session.range.max) {
        sessions.delete(id);
        throw new FakeApiError(400, 'EntityTooLarge', 'Your proposed upload is larger than the maximum object size specified in your policy.');
      }
      options.onUploadData?.(session.bucket, session.name, piece.byteLength);
      session.parts.push(Buffer.from(piece));
      session.received += piece.byteLength;
      const cutAt = options.cutSessionUpload?.(session.name, session.received);
      if (cutAt === true) {
        req.socket.destroy();
        return;
      }
    }
    if (!req.complete) throw new Error('client went away before the body ended');
    if (queryBytes > 0) throw new FakeApiError(400, 'InvalidArgument', 'a status query must have an empty body');
    if (range.total !== undefined && session.received > range.total) throw new FakeApiError(400, 'InvalidArgument', 'more bytes than the declared total');
    const finished = range.total !== undefined ? session.received === range.total : range.restOfObject && !range.query;
    if (!finished) {
      const headers: Record<string, string> = { 'content-length': '0' };
      if (session.received > 0) headers.range = `bytes=0-${session.received - 1}`;
      res.writeHead(308, headers);
      res.end();
      return;
    }
    const data = Buffer.concat(session.parts);
    sessions.delete(id);
    if (session.range !== undefined && data.byteLength < session.range.min) {
      throw new FakeApiError(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum object size specified in your policy.');
    }
    checkHashes(req, data);
    const stored = finalize(session.bucket, session.name, data, session.contentType);
    if (session.xml) {
      res.writeHead(200, { 'content-length': '0', 'x-goog-generation': stored.resource.generation, etag: stored.resource.etag });
      res.end();
    } else {
      sendJson(res, 200, stored.resource);
    }
    announce(stored);
  };

  const sessionDelete = (res: ServerResponse, id: string): void => {
    if (!sessions.delete(id)) throw new FakeApiError(404, 'NoSuchUpload', 'no such upload session');
    // 499 is what GCS answers to a cancelled resumable upload.
    res.writeHead(499, { 'content-length': '0' });
    res.end();
  };

  // ---------------------------------------------------------------- JSON API

  const serveJson = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const method = req.method ?? '';
    const upload = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
    if (upload !== null) {
      const bucketName = decodeURIComponent(upload[1] ?? '');
      bucketOf(bucketName);
      const uploadType = url.searchParams.get('uploadType');
      const uploadId = url.searchParams.get('upload_id');
      if (uploadId !== null) {
        requests.push(`json:session-${method.toLowerCase()}`);
        if (method === 'PUT') return await sessionPut(req, res, uploadId);
        if (method === 'DELETE') return sessionDelete(res, uploadId);
        throw new FakeApiError(405, 'MethodNotAllowed', `${method} on an upload session`);
      }
      if (method !== 'POST') throw new FakeApiError(405, 'MethodNotAllowed', `${method} on the upload path`);
      requests.push(`json:insert-${uploadType ?? 'none'}`);
      if (uploadType === 'media') {
        const name = requireName(url.searchParams.get('name'));
        const data = await readBody(req, { bucket: bucketName, name });
        checkHashes(req, data);
        const stored = finalize(bucketName, name, data, headerString(req, 'content-type') ?? 'application/octet-stream');
        sendJson(res, 200, stored.resource);
        return announce(stored);
      }
      if (uploadType === 'multipart') {
        const body = await readBody(req);
        const { metadata, media, mediaType } = parseMultipart(headerString(req, 'content-type') ?? '', body);
        const name = requireName(typeof metadata.name === 'string' ? metadata.name : url.searchParams.get('name'));
        options.onUploadData?.(bucketName, name, media.byteLength);
        if (typeof metadata.crc32c === 'string' && metadata.crc32c !== crc32cOf(media)) {
          throw new FakeApiError(400, 'InvalidArgument', 'crc32c does not match the data');
        }
        const contentType = typeof metadata.contentType === 'string' ? metadata.contentType : mediaType;
        const stored = finalize(bucketName, name, media, contentType);
        sendJson(res, 200, stored.resource);
        return announce(stored);
      }
      if (uploadType === 'resumable') {
        const body = await readBody(req);
        const metadata = body.byteLength === 0 ? {} : (JSON.parse(body.toString('utf8')) as Record<string, unknown>);
        const name = requireName(typeof metadata.name === 'string' ? metadata.name : url.searchParams.get('name'));
        const id = openSession({
          bucket: bucketName,
          name,
          contentType: headerString(req, 'x-upload-content-type') ?? (typeof metadata.contentType === 'string' ? metadata.contentType : 'application/octet-stream'),
          parts: [],
          received: 0,
          range: undefined,
          xml: false,
        });
        const location = new URL(`/upload/storage/v1/b/${encodeURIComponent(bucketName)}/o`, origin);
        location.searchParams.set('uploadType', 'resumable');
        location.searchParams.set('name', name);
        location.searchParams.set('upload_id', id);
        res.writeHead(200, { location: location.toString(), 'content-length': '0' });
        res.end();
        return;
      }
      throw new FakeApiError(400, 'InvalidArgument', `unknown uploadType ${String(uploadType)}`);
    }

    const list = /^\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
    if (list !== null) {
      if (method !== 'GET') throw new FakeApiError(405, 'MethodNotAllowed', `${method} on the object list`);
      requests.push('json:list');
      const bucket = bucketOf(decodeURIComponent(list[1] ?? ''));
      const prefix = url.searchParams.get('prefix') ?? '';
      const max = Math.min(Number(url.searchParams.get('maxResults') ?? pageSize) || pageSize, pageSize);
      const token = url.searchParams.get('pageToken');
      const after = token === null ? undefined : Buffer.from(token, 'base64url').toString('utf8');
      // GCS lists in lexicographic order of the names' UTF-8 bytes; the keys here are ASCII, where that is sort().
      const names = [...bucket.keys()].filter((name) => name.startsWith(prefix) && (after === undefined || name > after)).sort();
      const page = names.slice(0, max);
      const result: Record<string, unknown> = { kind: 'storage#objects' };
      if (page.length > 0) result.items = page.map((name) => bucket.get(name)?.resource);
      const last = page[page.length - 1];
      if (names.length > page.length && last !== undefined) result.nextPageToken = Buffer.from(last).toString('base64url');
      return sendJson(res, 200, result);
    }

    const one = /^\/storage\/v1\/b\/([^/]+)\/o\/([^/]+)$/.exec(url.pathname);
    if (one !== null) {
      const bucket = bucketOf(decodeURIComponent(one[1] ?? ''));
      const name = decodeURIComponent(one[2] ?? '');
      const stored = bucket.get(name);
      const generation = url.searchParams.get('generation');
      const found = stored !== undefined && (generation === null || generation === stored.resource.generation) ? stored : undefined;
      if (method === 'DELETE') {
        requests.push('json:delete');
        if (found === undefined) throw new FakeApiError(404, 'NoSuchKey', `No such object: ${name}`);
        bucket.delete(name);
        res.writeHead(204);
        res.end();
        return;
      }
      if (method !== 'GET') throw new FakeApiError(405, 'MethodNotAllowed', `${method} on an object`);
      const media = url.searchParams.get('alt') === 'media';
      requests.push(media ? 'json:media' : 'json:get');
      if (found === undefined) throw new FakeApiError(404, 'NoSuchKey', `No such object: ${name}`);
      if (media) return sendMedia(res, found);
      return sendJson(res, 200, found.resource);
    }
    throw new FakeApiError(404, 'NotFound', `no JSON API path ${url.pathname}`);
  };

  // ---------------------------------------------------------------- XML API, signed URLs only

  const serveXml = async (req: IncomingMessage, res: ServerResponse, url: URL, rawPath: string, rawQuery: string): Promise<void> => {
    const method = req.method ?? '';
    const match = /^\/([a-z0-9][a-z0-9._-]{1,61}[a-z0-9])\/(.+)$/.exec(rawPath);
    if (match === null) throw new FakeApiError(404, 'NotFound', `no XML API path ${rawPath}`);
    const bucketName = match[1] ?? '';
    const name = decodeURIComponent(match[2] ?? '');
    const uploadId = url.searchParams.get('upload_id');
    if (uploadId !== null) {
      // The session URI is the credential for the rest of a resumable upload, as on GCS: its signature is not checked.
      requests.push(`xml:session-${method.toLowerCase()}`);
      const session = sessions.get(uploadId);
      if (session === undefined || session.bucket !== bucketName || session.name !== name) throw new FakeApiError(404, 'NoSuchUpload', 'no such upload session');
      if (method === 'PUT') return await sessionPut(req, res, uploadId);
      if (method === 'DELETE') return sessionDelete(res, uploadId);
      throw new FakeApiError(405, 'MethodNotAllowed', `${method} on an upload session`);
    }
    verifySignature(req, method, rawPath, rawQuery, url.searchParams);
    const bucket = bucketOf(bucketName);
    const range = parseLengthRange(headerString(req, 'x-goog-content-length-range'));
    if (method === 'GET') {
      requests.push('xml:get');
      const stored = bucket.get(name);
      if (stored === undefined) throw new FakeApiError(404, 'NoSuchKey', 'The specified key does not exist.');
      return sendMedia(res, stored);
    }
    if (method === 'PUT') {
      requests.push('xml:put');
      const declared = headerString(req, 'content-length');
      if (range !== undefined && declared !== undefined && Number(declared) > range.max) {
        throw new FakeApiError(400, 'EntityTooLarge', 'Your proposed upload is larger than the maximum object size specified in your policy.');
      }
      const data = await readBody(req, { bucket: bucketName, name }, range?.max);
      if (range !== undefined && data.byteLength < range.min) throw new FakeApiError(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum object size specified in your policy.');
      checkHashes(req, data);
      const stored = finalize(bucketName, name, data, headerString(req, 'content-type') ?? 'application/octet-stream');
      res.writeHead(200, { 'content-length': '0', 'x-goog-generation': stored.resource.generation, etag: stored.resource.etag });
      res.end();
      return announce(stored);
    }
    if (method === 'POST' && headerString(req, 'x-goog-resumable') === 'start') {
      requests.push('xml:resumable-start');
      await readBody(req);
      const id = openSession({
        bucket: bucketName,
        name,
        contentType: headerString(req, 'content-type') ?? 'application/octet-stream',
        parts: [],
        received: 0,
        range,
        xml: true,
      });
      // Like GCS, the session URI is the signed URL with an upload_id added.
      const location = `${origin}${rawPath}?${rawQuery}&upload_id=${id}`;
      res.writeHead(201, { location, 'content-length': '0' });
      res.end();
      return;
    }
    throw new FakeApiError(405, 'MethodNotAllowed', `${method} is not served on signed URLs here`);
  };

  /** Checks a V4 signed request (GOOG4-RSA-SHA256, query-string auth) the way GCS does; throws a 403 otherwise. */
  const verifySignature = (req: IncomingMessage, method: string, rawPath: string, rawQuery: string, params: URLSearchParams): void => {
    const deny = (code: string, message: string): never => {
      throw new FakeApiError(403, code, message);
    };
    const one = (name: string): string => {
      const values = params.getAll(name);
      if (values.length === 0) deny('AccessDenied', `Anonymous caller does not have storage.objects access (no ${name}).`);
      if (values.length > 1) deny('SignatureDoesNotMatch', `${name} given more than once.`);
      return values[0] ?? '';
    };
    if (one('X-Goog-Algorithm') !== 'GOOG4-RSA-SHA256') deny('AuthenticationRequired', 'unsupported X-Goog-Algorithm');
    const credential = one('X-Goog-Credential');
    const date = one('X-Goog-Date');
    const expires = one('X-Goog-Expires');
    const signedHeaders = one('X-Goog-SignedHeaders');
    const signature = one('X-Goog-Signature');
    const [email, day, location, service, request] = credential.split('/');
    if (email !== options.serviceAccount.clientEmail) deny('AccessDenied', `unknown signer ${String(email)}`);
    if (location !== 'auto' || service !== 'storage' || request !== 'goog4_request') deny('SignatureDoesNotMatch', 'malformed X-Goog-Credential');
    const when = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(date);
    if (when === null || day !== date.slice(0, 8)) deny('SignatureDoesNotMatch', 'malformed X-Goog-Date');
    if (!/^\d{1,7}$/.test(expires) || Number(expires) > SEVEN_DAYS_S) deny('SignatureDoesNotMatch', 'malformed X-Goog-Expires');
    if (!/^[0-9a-f]+$/.test(signature)) deny('SignatureDoesNotMatch', 'malformed X-Goog-Signature');
    const headerNames = signedHeaders.split(';');
    if (!headerNames.includes('host') || headerNames.join(';') !== [...headerNames].sort().join(';') || headerNames.some((h) => h !== h.toLowerCase() || h === '')) {
      deny('SignatureDoesNotMatch', 'malformed X-Goog-SignedHeaders');
    }
    const canonicalQuery = rawQuery
      .split('&')
      .filter((pair) => pair !== '')
      .map((pair) => {
        const eq = pair.indexOf('=');
        const key = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replaceAll('+', ' '));
        const value = decodeURIComponent((eq < 0 ? '' : pair.slice(eq + 1)).replaceAll('+', ' '));
        return [strictEncode(key), strictEncode(value)] as const;
      })
      .filter(([key]) => key !== 'X-Goog-Signature')
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
      .map(([key, value]) => `${key}=${value}`)
      .join('&');
    const canonicalHeaders = headerNames
      .map((name) => {
        // The client signs the host name alone (no port), so the port of the Host header is left out here too.
        const raw = name === 'host' ? (headerString(req, 'host') ?? '').replace(/:\d+$/, '') : (headerString(req, name) ?? '');
        return `${name}:${raw.trim().replace(/\s{2,}/g, ' ')}\n`;
      })
      .join('');
    const canonicalRequest = [method, rawPath, canonicalQuery, canonicalHeaders, signedHeaders, 'UNSIGNED-PAYLOAD'].join('\n');
    const stringToSign = ['GOOG4-RSA-SHA256', date, `${day}/auto/storage/goog4_request`, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
    const verifier = createVerify('RSA-SHA256');
    verifier.update(stringToSign);
    if (!verifier.verify(publicKey, Buffer.from(signature, 'hex'))) {
      deny('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
    }
    const start = Date.UTC(Number(when?.[1]), Number(when?.[2]) - 1, Number(when?.[3]), Number(when?.[4]), Number(when?.[5]), Number(when?.[6]));
    const at = now();
    if (at >= start + Number(expires) * 1000) deny('ExpiredToken', 'The provided token has expired.');
    if (at < start - CLOCK_SKEW_MS) deny('AccessDenied', 'The request is not yet valid.');
  };

  const server: Server = createServer((req, res) => {
    void (async () => {
      const rawUrl = req.url ?? '/';
      const q = rawUrl.indexOf('?');
      const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
      const rawQuery = q < 0 ? '' : rawUrl.slice(q + 1);
      const url = new URL(rawUrl, origin);
      const json = rawPath.startsWith('/storage/v1/') || rawPath.startsWith('/upload/storage/v1/');
      try {
        if (json) await serveJson(req, res, url);
        else await serveXml(req, res, url, rawPath, rawQuery);
      } catch (error) {
        if (!(error instanceof FakeApiError)) {
          // A client that went away mid-body needs no answer, and is no failure of the server.
          if (!req.complete) {
            res.destroy();
            return;
          }
          report(error);
        }
        const failure = error instanceof FakeApiError ? error : new FakeApiError(500, 'InternalError', 'internal error');
        if (res.headersSent) {
          res.destroy();
          return;
        }
        // The rest of a refused body is read and dropped so the client sees the answer, then the connection closes.
        if (!req.complete) req.resume();
        if (json) sendJson(res, failure.status, googleErrorBody(failure), { connection: 'close' });
        else sendXmlError(res, failure);
      }
    })();
  });
  const host = options.host ?? '127.0.0.1';
  await listenForTests(server, host);
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('fake GCS did not get a port');
  origin = `http://${host}:${address.port}`;

  return {
    url: origin,
    object(bucket, name) {
      const stored = buckets.get(bucket)?.get(name);
      return stored === undefined ? undefined : { resource: stored.resource, data: Buffer.from(stored.data) };
    },
    openSessions: () => sessions.size,
    sessionBytes: () => sessionBytes,
    requests,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** The base64 CRC32C of `data`, as GCS reports it, by the client's own implementation. */
function crc32cOf(data: Buffer): string {
  const crc = new CRC32C();
  crc.update(data);
  return crc.toString();
}

/** Percent-encodes all but `A-Za-z0-9-._~`, as V4 canonical query strings ask. */
function strictEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function headerString(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function requireName(name: string | null | undefined): string {
  if (name === null || name === undefined || name === '') throw new FakeApiError(400, 'InvalidArgument', 'object name missing');
  return name;
}

function sendXmlError(res: ServerResponse, error: FakeApiError): void {
  const text = `<?xml version='1.0' encoding='UTF-8'?><Error><Code>${error.reason}</Code><Message>${escapeXml(error.message)}</Message></Error>`;
  res.writeHead(error.status, { 'content-type': 'application/xml; charset=UTF-8', 'content-length': Buffer.byteLength(text), connection: 'close' });
  res.end(text);
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** `x-goog-content-length-range: MIN,MAX`, or undefined when absent; a malformed one is a 400. */
function parseLengthRange(value: string | undefined): { min: number; max: number } | undefined {
  if (value === undefined) return undefined;
  const match = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(value);
  if (match === null) throw new FakeApiError(400, 'InvalidArgument', 'malformed x-goog-content-length-range');
  return { min: Number(match[1]), max: Number(match[2]) };
}

interface ContentRange {
  /** `bytes *\/T`: how much has arrived? */
  query: boolean;
  start: number | undefined;
  total: number | undefined;
  /** `bytes A-*\/*`: the body is all the rest of the object. */
  restOfObject: boolean;
}

function parseContentRange(value: string | string[] | undefined): ContentRange {
  // No header: the body is the whole object.
  if (value === undefined) return { query: false, start: 0, total: undefined, restOfObject: true };
  const text = Array.isArray(value) ? (value[0] ?? '') : value;
  const query = /^bytes \*\/(\d+|\*)$/.exec(text);
  if (query !== null) return { query: true, start: undefined, total: query[1] === '*' ? undefined : Number(query[1]), restOfObject: false };
  const span = /^bytes (\d+)-(\d+|\*)\/(\d+|\*)$/.exec(text);
  if (span === null) throw new FakeApiError(400, 'InvalidArgument', `malformed Content-Range ${text}`);
  const total = span[3] === '*' ? undefined : Number(span[3]);
  return { query: false, start: Number(span[1]), total, restOfObject: span[2] === '*' && total === undefined };
}

/** Checks an `X-Goog-Hash: crc32c=...,md5=...` the client sent against the data; a mismatch is a 400. */
function checkHashes(req: IncomingMessage, data: Buffer): void {
  const header = headerString(req, 'x-goog-hash');
  if (header === undefined) return;
  for (const pair of header.split(',')) {
    const eq = pair.indexOf('=');
    const kind = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const actual = kind === 'crc32c' ? crc32cOf(data) : kind === 'md5' ? createHash('md5').update(data).digest('base64') : value;
    if (actual !== value) throw new FakeApiError(400, 'BadDigest', `the ${kind} of the data does not match the one sent`);
  }
}

/** Splits a multipart/related upload into its JSON metadata and its media. */
function parseMultipart(contentType: string, body: Buffer): { metadata: Record<string, unknown>; media: Buffer; mediaType: string } {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
  if (boundary === undefined) throw new FakeApiError(400, 'InvalidArgument', 'multipart upload without a boundary');
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: Buffer[] = [];
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    const from = at + delimiter.byteLength;
    if (body.subarray(from, from + 2).toString() === '--') break;
    const next = body.indexOf(delimiter, from);
    if (next < 0) break;
    // Each part sits between the CRLF after a delimiter and the CRLF before the next one.
    parts.push(body.subarray(from + 2, next - 2));
    at = next;
  }
  const split = (part: Buffer): { headers: string; content: Buffer } => {
    const end = part.indexOf('\r\n\r\n');
    if (end < 0) throw new FakeApiError(400, 'InvalidArgument', 'multipart part without headers');
    return { headers: part.subarray(0, end).toString('utf8'), content: part.subarray(end + 4) };
  };
  const [first, second] = parts;
  if (first === undefined || second === undefined) throw new FakeApiError(400, 'InvalidArgument', 'multipart upload needs two parts');
  const meta = split(first);
  const media = split(second);
  const mediaType = /content-type:\s*([^\r\n]+)/i.exec(media.headers)?.[1]?.trim() ?? 'application/octet-stream';
  return { metadata: JSON.parse(meta.content.toString('utf8')) as Record<string, unknown>, media: Buffer.from(media.content), mediaType };
}
