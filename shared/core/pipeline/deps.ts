import type { Builder, Repo, TrybotPolicy } from '../model/types.ts';
import type { BlobStore } from '../../ports/blobs.ts';
import type { Compute } from '../../ports/compute.ts';
import type { GitHub } from '../../ports/github.ts';
import type { Logger } from '../../ports/log.ts';
import type { Publisher } from '../../ports/messages.ts';
import type { Reporter } from '../../ports/reporter.ts';
import type { Source } from '../../ports/source.ts';
import type { StateStore } from '../../ports/state.ts';

/** What the repos and builders are, as the pipeline sees them. */
export interface Catalog {
  repos: readonly Repo[];
  builders: ReadonlyMap<string, Builder>;
  /** Who may start trybots; absent, nobody is trusted and every request waits for an approval that cannot come. */
  trybots?: TrybotPolicy;
}

/** Tunables with defaults that suit both runtimes. */
export interface PipelineOptions {
  /** Commits taken from one branch in one poll after the first; the oldest beyond it are skipped, with a warning. */
  maxCommitsPerPoll: number;
  /** Log chunk size for workers; the number of chunks is the builder's maxLogBytes over this. */
  logChunkBytes: number;
  /** How long a worker's signed URLs outlive its deadline, for the last upload. */
  urlSlackMs: number;
  /** Public base URL of the dashboard, for links in reports. */
  dashboardUrl: string;
  /**
   * How long past its deadline a worker may live before the reaper removes it, and how long after launch a task may
   * go unlisted by its compute before the reaper calls its worker vanished.
   */
  reapGraceMs: number;
}

export const defaultPipelineOptions: PipelineOptions = {
  maxCommitsPerPoll: 100,
  logChunkBytes: 256 * 1024,
  urlSlackMs: 5 * 60_000,
  dashboardUrl: 'http://localhost',
  reapGraceMs: 60_000,
};

/** Everything a pipeline function may touch. Each function uses only the part it needs. */
export interface PipelineDeps {
  catalog: Catalog;
  state: StateStore;
  publisher: Publisher;
  blobs: BlobStore;
  compute: Compute;
  source: Source;
  reporters: readonly Reporter[];
  /** GitHub's API, where the deployment has credentials for it: pull requests, membership, statuses. */
  github?: GitHub;
  logger: Logger;
  now: () => number;
  options: PipelineOptions;
}
