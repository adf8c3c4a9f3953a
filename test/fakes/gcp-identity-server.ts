import { createSign, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { listenForTests } from './http.ts';

/**
 * The identity a Cloud Function has, faked: a metadata server (what `GCE_METADATA_HOST` points google-auth-library
 * at) that names the runtime's service account and hands out access tokens, and the IAM Credentials `signBlob` API,
 * which signs with that account's key for a caller holding one of those tokens. This is how a function with no
 * private key gets V4 signed URLs.
 */
export interface FakeIdentity {
  /** `host:port`, the value for `GCE_METADATA_HOST`. */
  metadataHost: string;
  /** The `signingEndpoint` for the Storage client: `.../v1/projects/-/serviceAccounts/`. */
  signingEndpoint: string;
  /** Every signBlob call, by the account it named. */
  signBlobCalls: string[];
  /** Answer signBlob with 403, as IAM does when the account lacks iam.serviceAccounts.signBlob on itself. */
  denySignBlob: boolean;
  close(): Promise<void>;
}

/** Starts both fakes on one free port of 127.0.0.1; signBlob signs RSA-SHA256 with `privateKey`. */
export async function startFakeIdentity(options: {
  clientEmail: string;
  privateKey: KeyObject | string;
  projectId: string;
}): Promise<FakeIdentity> {
  const token = `fake-token-${randomBytes(8).toString('hex')}`;
  const signBlobCalls: string[] = [];
  const metadata: Record<string, string> = {
    '/computeMetadata/v1/instance': '',
    '/computeMetadata/v1/instance/service-accounts/default/email': options.clientEmail,
    '/computeMetadata/v1/project/project-id': options.projectId,
    '/computeMetadata/v1/universe/universe-domain': 'googleapis.com',
  };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, body: string, type = 'text/plain'): void => {
      res.writeHead(status, { 'metadata-flavor': 'Google', 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (url.pathname.startsWith('/computeMetadata/')) {
      if (req.headers['metadata-flavor'] !== 'Google') return send(403, 'missing Metadata-Flavor header');
      if (url.pathname === '/computeMetadata/v1/instance/service-accounts/default/token') {
        return send(200, JSON.stringify({ access_token: token, expires_in: 3599, token_type: 'Bearer' }), 'application/json');
      }
      const value = metadata[url.pathname.replace(/\/$/, '')];
      return value === undefined ? send(404, 'not found') : send(200, value);
    }
    const sign = /^\/v1\/projects\/-\/serviceAccounts\/([^/]+):signBlob$/.exec(url.pathname);
    if (sign !== null && req.method === 'POST') {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const email = decodeURIComponent(sign[1] ?? '');
        signBlobCalls.push(email);
        if (req.headers.authorization !== `Bearer ${token}`) return send(401, JSON.stringify({ error: { code: 401, message: 'bad token' } }), 'application/json');
        if (email !== options.clientEmail || identity.denySignBlob) return send(403, JSON.stringify({ error: { code: 403, message: "Permission 'iam.serviceAccounts.signBlob' denied on resource (or it may not exist)." } }), 'application/json');
        let payload: unknown;
        try {
          payload = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { payload?: unknown }).payload;
        } catch {
          payload = undefined;
        }
        if (typeof payload !== 'string') return send(400, JSON.stringify({ error: { code: 400, message: 'payload missing' } }), 'application/json');
        const signer = createSign('RSA-SHA256');
        signer.update(Buffer.from(payload, 'base64'));
        const signedBlob = signer.sign(options.privateKey).toString('base64');
        send(200, JSON.stringify({ keyId: 'fake-key-1', signedBlob }), 'application/json');
      });
      return;
    }
    send(404, 'not found');
  });
  await listenForTests(server);
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('fake identity server did not get a port');
  const host = `127.0.0.1:${address.port}`;
  const identity: FakeIdentity = {
    metadataHost: host,
    signingEndpoint: `http://${host}/v1/projects/-/serviceAccounts/`,
    signBlobCalls,
    denySignBlob: false,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
  return identity;
}
