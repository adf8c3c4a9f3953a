import type { Repo } from '../core/model/types.ts';
import type { Source } from '../ports/source.ts';

/** One Source over two: repos that live on GitHub go to `github`, every other repo to `git`. */
export function routeSources(git: Source, github: Source): Source {
  const pick = (repo: Repo): Source => (repo.github !== undefined ? github : git);
  return {
    changes: (repo, branch, previousHead, limit) => pick(repo).changes(repo, branch, previousHead, limit),
    archive: (repo, commit) => pick(repo).archive(repo, commit),
    fetchCommit: (repo, commit, ref) => pick(repo).fetchCommit(repo, commit, ref),
    changedFiles: (repo, base, head) => pick(repo).changedFiles(repo, base, head),
  };
}
