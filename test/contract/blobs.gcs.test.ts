import { Storage } from '@google-cloud/storage';
import { createGcsBlobs } from '../../shared/adapters/gcp/gcs-blobs.ts';
import { headersFragment, signedRequest } from '../../shared/core/model/signed-url.ts';
import { createTestServiceAccount, startFakeGcs } from '../fakes/gcs-server.ts';
import { blobsContract } from './blobs.contract.ts';

const BUCKET = 'hermetic-contract';

// The real client against the fake Cloud Storage: JSON API for the store, V4 signed URLs on the XML API paths.
blobsContract('gcs', async ({ now }) => {
  const account = createTestServiceAccount();
  const finalized: string[] = [];
  const serverErrors: Error[] = [];
  const uploadListeners = new Map<string, () => void>();
  const fake = await startFakeGcs({
    buckets: [BUCKET],
    serviceAccount: account,
    now,
    // Small pages, so every listing of the suite goes through pageToken.
    pageSize: 2,
    onFinalized: (object) => finalized.push(object.name),
    onUploadData: (_bucket, name) => uploadListeners.get(name)?.(),
    onError: (error) => serverErrors.push(error),
  });
  const storage = new Storage({ apiEndpoint: fake.url, projectId: 'test-project', credentials: account.credentials });
  return {
    store: createGcsBlobs({ storage, bucket: BUCKET, now }),
    finalized,
    serverErrors,
    uploadStarted: (key) =>
      new Promise<void>((resolve) =>
        uploadListeners.set(key, () => {
          uploadListeners.delete(key);
          resolve();
        }),
      ),
    // GCS answers a body outside a signed x-goog-content-length-range with 400 EntityTooLarge.
    tooLargeStatus: 400,
    refusals: {
      badSignature: /SignatureDoesNotMatch/,
      noSignature: /AccessDenied/,
      wrongMethod: /SignatureDoesNotMatch/,
      expired: /ExpiredToken/,
      repeated: /SignatureDoesNotMatch/,
    },
    signatureParam: 'X-Goog-Signature',
    expiryParam: 'X-Goog-Expires',
    withLimit: (url, maxBytes) => {
      const { url: bare, headers } = signedRequest(url);
      if (maxBytes === undefined) delete headers['x-goog-content-length-range'];
      else headers['x-goog-content-length-range'] = `0,${maxBytes}`;
      return `${bare}${headersFragment(headers)}`;
    },
    cleanup: () => fake.close(),
  };
});
