import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readGitHubEnvironment } from '../../shared/core/config/github-environment.ts';
import { ConfigError } from '../../shared/core/errors.ts';

const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----';

describe('readGitHubEnvironment', () => {
  it('is undefined without GitHub variables, and reads a token or an App', () => {
    assert.equal(readGitHubEnvironment({}), undefined);
    assert.deepEqual(readGitHubEnvironment({ GITHUB_TOKEN: 'ghp_x', HERMETIC_WEBHOOK_SECRET: 's' }), { auth: { token: 'ghp_x' }, webhookSecret: 's' });
    assert.deepEqual(readGitHubEnvironment({ HERMETIC_GITHUB_APP_ID: '42', GITHUB_APP_PRIVATE_KEY: pem, HERMETIC_GITHUB_API_URL: 'https://ghe.example/api/v3/' }), {
      auth: { appId: '42', privateKey: pem },
      apiUrl: 'https://ghe.example/api/v3',
    });
  });

  it('names every missing or malformed variable at once', () => {
    assert.throws(
      () => readGitHubEnvironment({ HERMETIC_GITHUB_AUTH: 'app', HERMETIC_GITHUB_APP_ID: 'forty-two', HERMETIC_GITHUB_API_URL: 'ftp:nope' }),
      (error: unknown) =>
        error instanceof ConfigError &&
        /HERMETIC_GITHUB_APP_ID="forty-two" is not a numeric App ID/.test(error.message) &&
        /GITHUB_APP_PRIVATE_KEY is not set/.test(error.message) &&
        /HERMETIC_GITHUB_API_URL="ftp:nope" is not a URL/.test(error.message),
    );
    assert.throws(() => readGitHubEnvironment({ HERMETIC_GITHUB_AUTH: 'token' }), /GITHUB_TOKEN is not set/);
    assert.throws(() => readGitHubEnvironment({ HERMETIC_WEBHOOK_SECRET: 's' }), /no GitHub credentials/);
  });
});
