import type { Build } from '../model/types.ts';

/** The log fields that name a build: which it is, and of what repo, commit and builder. */
export function buildFields(build: Pick<Build, 'id' | 'repo' | 'commit' | 'builder'>) {
  return { build: build.id, repo: build.repo, commit: build.commit, builder: build.builder };
}
