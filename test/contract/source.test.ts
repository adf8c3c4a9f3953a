import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGitHubClient } from '../../shared/adapters/github/client.ts';
import { createGitHubSource } from '../../shared/adapters/github/github-source.ts';
import { createStateEtagCache } from '../../shared/adapters/github/state-etag-cache.ts';
import { createGitSource } from '../../shared/adapters/local/git-source.ts';
import type { Repo } from '../../shared/core/model/types.ts';
import { createFakeSource } from '../fakes/fake-source.ts';
import { createMemoryState } from '../fakes/memory-state.ts';
import { createTestRepo, type TestRepo } from '../helpers/git-repo.ts';
import { startGitHubWorld, TEST_TOKEN } from '../helpers/github-world.ts';
import { sourceContract, type SourceHarness } from './source.contract.ts';

const makeRepo = (name: string, url: string): Repo => ({ name, url, branches: ['main'], builders: ['default'], backfill: 10 });

sourceContract('git', async () => {
  const root = await mkdtemp(join(tmpdir(), 'hermetic-source-contract-'));
  const upstream = await createTestRepo(join(root, 'upstream'));
  return {
    source: createGitSource({ cacheDir: join(root, 'cache'), timeoutMs: 30_000 }),
    repo: makeRepo('upstream', upstream.path),
    ...historyIn(upstream),
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
    async commitOnRef(ref, parent, files, message) {
      // The fake keeps heads by name, whatever the name: a ref is a head no poll asks for.
      source.reset(repo.name, ref, parent);
      return source.commit(repo.name, ref, files, message);
    },
    resetBranch: async (branch, to) => source.reset(repo.name, branch, to),
    cleanup: async () => undefined,
  };
});

sourceContract('github', async () => {
  const world = await startGitHubWorld();
  const client = createGitHubClient({ credentials: { token: TEST_TOKEN }, baseUrl: world.github.url });
  return {
    source: createGitHubSource({ client, etags: createStateEtagCache(createMemoryState()) }),
    repo: { ...makeRepo('widgets', world.upstream.path), github: { owner: 'acme', name: 'widgets' } },
    ...historyIn(world.upstream),
    cleanup: () => world.close(),
  };
});

/** The harness's history hooks over a real work tree. */
function historyIn(upstream: TestRepo): Pick<SourceHarness, 'commit' | 'commitOnRef' | 'resetBranch'> {
  const current = (): Promise<string> => upstream.git('symbolic-ref', '--short', 'HEAD');
  return {
    async commit(branch, files, message) {
      if ((await current()) !== branch) await switchTo(upstream, branch);
      return commitFiles(upstream, files, message);
    },
    async commitOnRef(ref, parent, files, message) {
      const branch = await current();
      await upstream.git('checkout', '--quiet', '--detach', parent);
      const hash = await upstream.commit(files, message);
      await upstream.git('update-ref', ref, hash);
      await upstream.git('checkout', '--quiet', branch);
      return hash;
    },
    async resetBranch(branch, to) {
      if ((await current()) === branch) await upstream.git('reset', '--quiet', '--hard', to);
      else await upstream.git('branch', '--force', branch, to);
    },
  };
}

/** Commits `files` on the checked-out branch, a null deleting its path. */
async function commitFiles(repo: TestRepo, files: Record<string, string | null>, message: string): Promise<string> {
  const deleted = Object.keys(files).filter((path) => files[path] === null);
  if (deleted.length > 0) await repo.git('rm', '--quiet', '--', ...deleted);
  const written = Object.fromEntries(Object.entries(files).filter((entry): entry is [string, string] => entry[1] !== null));
  return repo.commit(written, message);
}

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
