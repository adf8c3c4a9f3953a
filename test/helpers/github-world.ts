import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeGitHub, type FakeGitHub, type FakeGitHubOptions } from '../fakes/github-server.ts';
import { createTestRepo, type TestRepo } from './git-repo.ts';

/** A fake GitHub serving one real repository, "acme/widgets", and the test's temporary folder. */
export interface GitHubWorld {
  github: FakeGitHub;
  upstream: TestRepo;
  root: string;
  close(): Promise<void>;
}

/** The personal token the world's fake accepts, acting as "octocat". */
export const TEST_TOKEN = 'ghp_test';
export const TEST_APP_ID = 4242;
export const TEST_INSTALLATION_ID = 77;

/** Starts a fake GitHub over a fresh repository; close() stops it and removes the folder. */
export async function startGitHubWorld(options: FakeGitHubOptions = {}): Promise<GitHubWorld> {
  const root = await mkdtemp(join(tmpdir(), 'hermetic-github-'));
  const upstream = await createTestRepo(join(root, 'widgets'));
  const github = await startFakeGitHub({ tokens: { [TEST_TOKEN]: 'octocat' }, ...options });
  github.addRepo('acme/widgets', upstream.path);
  return {
    github,
    upstream,
    root,
    async close() {
      await github.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** A fresh RSA key pair in PEM, as a GitHub App's private key is downloaded. */
export function appKeyPair(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(), publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}
