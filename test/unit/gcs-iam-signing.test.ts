import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Storage } from '@google-cloud/storage';
import { createGcsBlobs } from '../../shared/adapters/gcp/gcs-blobs.ts';
import { putWithRetry } from '../../shared/agent/put-with-retry.ts';
import type { BlobStore } from '../../shared/ports/blobs.ts';
import { startFakeIdentity, type FakeIdentity } from '../fakes/gcp-identity-server.ts';
import { createTestServiceAccount, startFakeGcs, type FakeGcs } from '../fakes/gcs-server.ts';

const BUCKET = 'hermetic-iam-signing';

// As in Cloud Functions: a client built with no credentials finds the runtime's service account on the metadata
// server and, holding no key, signs through IAM Credentials signBlob. This file owns its process's environment.
describe('gcs signed URLs without a private key, through IAM signBlob', { timeout: 300_000 }, () => {
  let gcs: FakeGcs;
  let identity: FakeIdentity;
  let store: BlobStore;
  let config: string;

  before(async () => {
    const account = createTestServiceAccount('hermetic-runtime@test-project.iam.gserviceaccount.com');
    gcs = await startFakeGcs({ buckets: [BUCKET], serviceAccount: account });
    identity = await startFakeIdentity({ clientEmail: account.clientEmail, privateKey: account.privateKeyPem, projectId: 'test-project' });
    // No key file, no gcloud login: only the metadata server is left to find credentials with.
    config = await mkdtemp(join(tmpdir(), 'hermetic-no-gcloud-'));
    delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
    process.env.CLOUDSDK_CONFIG = config;
    process.env.GCE_METADATA_HOST = identity.metadataHost;
    const storage = new Storage({ apiEndpoint: gcs.url, projectId: 'test-project' });
    store = createGcsBlobs({ storage, bucket: BUCKET, signingEndpoint: identity.signingEndpoint });
  });

  after(async () => {
    await gcs.close();
    await identity.close();
    await rm(config, { recursive: true, force: true });
  });

  it('signs GET and capped PUT URLs that Cloud Storage accepts', async () => {
    await store.put('iam/source.tar.gz', 'source bytes');
    const get = await store.signUrl('iam/source.tar.gz', { method: 'GET', expiresAt: Date.now() + 60_000 });
    assert.match(get, /X-Goog-Credential=hermetic-runtime%40test-project\.iam\.gserviceaccount\.com%2F/);
    const response = await fetch(get);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), 'source bytes');

    const put = await store.signUrl('iam/result.json', { method: 'PUT', expiresAt: Date.now() + 60_000, maxBytes: 64 });
    await putWithRetry(put, '{"ok":true}', { what: 'result', contentType: 'application/json', baseDelayMs: 1 });
    assert.equal(gcs.object(BUCKET, 'iam/result.json')?.data.toString(), '{"ok":true}');
    await assert.rejects(putWithRetry(put, 'x'.repeat(65), { what: 'result', baseDelayMs: 1 }), /HTTP 400/);
    assert.deepEqual(identity.signBlobCalls, ['hermetic-runtime@test-project.iam.gserviceaccount.com', 'hermetic-runtime@test-project.iam.gserviceaccount.com']);
  });

  it('fails to sign, saying why, when IAM refuses', async () => {
    identity.denySignBlob = true;
    try {
      await assert.rejects(
        store.signUrl('iam/x', { method: 'GET', expiresAt: Date.now() + 60_000 }),
        /cannot sign a GET URL for "iam\/x": .*iam\.serviceAccounts\.signBlob/,
      );
    } finally {
      identity.denySignBlob = false;
    }
  });
});
