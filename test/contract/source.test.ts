import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGitSource } from '../../shared/adapters/local/git-source.ts';
import type { Repo } from '../../shared/model/types.ts';
import { createFakeSource } from '../fakes/fake-source.ts';
import { createTestRepo, type TestRepo } from '../helpers/git-repo.ts';
import { sourceContract } from './source.contract.ts';

const makeRepo = (name: string, url: string): Repo => ({ name, url, branches: ['main'], builders: ['default'], backfill: 10 });

sourceContract('git', async () => {
  const root = await mkdtemp(join(tmpdir(), 'hermetic-source-contract-'));
  const upstream = await createTestRepo(join(root, 'upstream'));
  const current = (): Promise<string> => upstream.git('symbolic-ref', '--short', 'HEAD');
  return {
    source: createGitSource({ cacheDir: join(root, 'cache'), timeoutMs: 30_000 }),
    repo: makeRepo('upstream', upstream.path),
    async commit(branch, files, message) {
      if ((await current()) !== branch) await switchTo(upstream, branch);
      return upstream.commit(files, message);
    },
    async resetBranch(branch, to) {
      if ((await current()) === branch) await upstream.git('reset', '--quiet', '--hard', to);
      else await upstream.git('branch', '--force', branch, to);
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

sourceContract('fake', async () => {
  const source = createFakeSource();
  const repo = makeRepo('demo', '/nowhere/demo');
  return {
    source,
    repo,
    commit: async (branch, files, message) => source.commit(repo.name, branch, files, message),
    resetBranch: async (branch, to) => source.reset(repo.name, branch, to),
    cleanup: async () => undefined,
  };
});

/** Checks out `branch`; a new one starts empty and without history, as the harness promises. */
async function switchTo(repo: TestRepo, branch: string): Promise<void> {
  const exists = await repo.git('rev-parse', '--verify', '--quiet', `refs/heads/${branch}`).then(
    () => true,
    () => false,
  );
  if (exists) {
    await repo.git('checkout', '--quiet', branch);
    return;
  }
  await repo.git('checkout', '--quiet', '--orphan', branch);
  await repo.git('rm', '-r', '-f', '--quiet', '--ignore-unmatch', '.');
}
