import type { Repo } from '../../shared/model/types.ts';
import type { BranchChanges, CommitInfo, Source } from '../../shared/ports/source.ts';

/** A source whose branches are lists of commits, oldest first; `push` adds one. For the pipeline's unit tests. */
export function createFakeSource() {
  const branches = new Map<string, CommitInfo[]>();
  let counter = 0;
  return {
    /** Adds a commit on top of the branch and returns its hash. */
    push(repo: string, branch: string, subject = `commit ${counter + 1}`): string {
      const key = `${repo}/${branch}`;
      const list = branches.get(key) ?? [];
      const hash = (++counter).toString(16).padStart(40, '0');
      const parent = list.at(-1);
      list.push({ hash, parents: parent ? [parent.hash] : [], author: 'Tester', subject, committedAt: counter * 1000 });
      branches.set(key, list);
      return hash;
    },
    async changes(repo: Repo, branch: string, previousHead: string | undefined, limit: number): Promise<BranchChanges> {
      const list = branches.get(`${repo.name}/${branch}`);
      if (list === undefined || list.length === 0) throw new Error(`no branch ${branch} in ${repo.name}`);
      const head = list[list.length - 1]?.hash ?? '';
      const from = previousHead === undefined ? -1 : list.findIndex((commit) => commit.hash === previousHead);
      const fresh = previousHead === undefined ? list : list.slice(from + 1);
      const commits = fresh.slice(-limit);
      return { head, commits, forced: previousHead !== undefined && from < 0, skipped: fresh.length - commits.length };
    },
    async archive(repo: Repo, commit: string): Promise<Uint8Array> {
      return Buffer.from(`tarball of ${repo.name}@${commit}`);
    },
  } satisfies Source & { push: unknown };
}
