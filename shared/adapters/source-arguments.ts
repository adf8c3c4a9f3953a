import { isCommitHash, isSafeBranchName } from '../core/model/refs.ts';
import { PermanentError } from '../core/errors.ts';
import type { Repo } from '../core/model/types.ts';

/** Refuses, naming the repo, a `changes` call no source may run: an unsafe branch, a previous head that is not a full hash, a bad limit. */
export function checkChangesArguments(repo: Repo, branch: string, previousHead: string | undefined, limit: number): void {
  if (!isSafeBranchName(branch)) throw new PermanentError(`repo "${repo.name}": unsafe branch name ${JSON.stringify(branch)}`);
  if (previousHead !== undefined && !isCommitHash(previousHead)) {
    throw new PermanentError(`repo "${repo.name}": previous head ${JSON.stringify(previousHead)} is not a full commit hash`);
  }
  if (!Number.isSafeInteger(limit) || limit < 0) throw new PermanentError(`repo "${repo.name}": limit ${limit} is not a non-negative integer`);
}

/** Refuses, naming the repo, a commit that is not a full hash. */
export function checkCommitArgument(repo: Repo, commit: string): void {
  if (!isCommitHash(commit)) throw new PermanentError(`repo "${repo.name}": ${JSON.stringify(commit)} is not a full commit hash`);
}
