import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createCloudLogger } from '../../shared/adapters/gcp/cloud-logger.ts';
import { readGoogleCloudEnvironment, requiredVariables } from '../../shared/adapters/gcp/environment.ts';
import { ConfigError } from '../../shared/errors.ts';

const complete = {
  HERMETIC_PROJECT: 'my-builds-1',
  HERMETIC_REGION: 'us-central1',
  HERMETIC_ZONE: 'us-central1-a',
  HERMETIC_BUCKET: 'my-builds-1-hermetic',
  HERMETIC_DASHBOARD_URL: 'https://my-builds-1.appspot.com',
  HERMETIC_IMAGE_REPO: 'us-central1-docker.pkg.dev/my-builds-1/hermetic',
  HERMETIC_SIGNER: 'hermetic-functions@my-builds-1.iam.gserviceaccount.com',
  HERMETIC_WORKER_SA: 'hermetic-worker@my-builds-1.iam.gserviceaccount.com',
};

describe('the Google Cloud environment', () => {
  it('reads a complete environment, with defaults for the optional variables', () => {
    const read = readGoogleCloudEnvironment(complete);
    assert.equal(read.project, 'my-builds-1');
    assert.equal(read.zone, 'us-central1-a');
    assert.equal(read.configFile, 'hermetic.config.json');
    assert.equal(read.maxDeliveryAttempts, 5);
    assert.equal(readGoogleCloudEnvironment({ ...complete, HERMETIC_MAX_DELIVERY_ATTEMPTS: '10' }).maxDeliveryAttempts, 10);
  });

  it('fails fast, naming every missing and malformed variable at once', () => {
    const { HERMETIC_BUCKET: _bucket, HERMETIC_SIGNER: _signer, ...partial } = complete;
    assert.throws(
      () => readGoogleCloudEnvironment({ ...partial, HERMETIC_PROJECT: 'Bad_Project', HERMETIC_MAX_DELIVERY_ATTEMPTS: '2' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /HERMETIC_PROJECT="Bad_Project" is not the Google Cloud project ID/);
        assert.match(error.message, /HERMETIC_BUCKET is not set \(the blobs bucket name\)/);
        assert.match(error.message, /HERMETIC_SIGNER is not set/);
        assert.match(error.message, /HERMETIC_MAX_DELIVERY_ATTEMPTS="2" is not a whole number from 5 to 100/);
        assert.doesNotMatch(error.message, /HERMETIC_REGION/);
        return true;
      },
    );
  });

  it('refuses a zone outside the region', () => {
    assert.throws(() => readGoogleCloudEnvironment({ ...complete, HERMETIC_ZONE: 'europe-west1-b' }), /HERMETIC_ZONE=europe-west1-b is not in HERMETIC_REGION=us-central1/);
  });

  it('lists every variable deploy must set', () => {
    assert.deepEqual(requiredVariables.map((variable) => variable.name).sort(), Object.keys(complete).sort());
  });
});

describe('the Cloud Logging logger', () => {
  it('writes one JSON entry a line, with severity and message', () => {
    const lines: string[] = [];
    const logger = createCloudLogger({ write: (line) => lines.push(line) });
    logger.info('build.planned', { buildId: 'b1', tasks: 3 });
    logger.warn('landed.ignored', { object: 'x' });
    logger.error('message.dead-lettered', { reason: 'bad' });
    assert.deepEqual(
      lines.map((line) => JSON.parse(line) as unknown),
      [
        { severity: 'INFO', message: 'build.planned', buildId: 'b1', tasks: 3 },
        { severity: 'WARNING', message: 'landed.ignored', object: 'x' },
        { severity: 'ERROR', message: 'message.dead-lettered', reason: 'bad' },
      ],
    );
    assert.ok(lines.every((line) => line.endsWith('\n') && !line.slice(0, -1).includes('\n')));
  });
});
