import type { ShardPlan, PlannedUnit } from './shard-plan.ts';

/** The pipeline's records. Plain data: stored as documents, rendered on the dashboard, sent in messages. */

/** A build's verdict, or where it is on the way to one. */
export type BuildStatus = 'queued' | 'running' | 'passed' | 'failed' | 'flaky' | 'infra-failure';
export const terminalBuildStatuses: readonly BuildStatus[] = ['passed', 'failed', 'flaky', 'infra-failure'];

/** One attempt of a task on one worker. `lost`: the worker ended without a usable result. */
export type TaskStatus = 'pending' | 'launched' | 'passed' | 'failed' | 'timed-out' | 'lost';
export const terminalTaskStatuses: readonly TaskStatus[] = ['passed', 'failed', 'timed-out', 'lost'];

/** One command a worker runs, as an argument vector: no shell unless the builder asks for one. */
export interface Step {
  name: string;
  argv: string[];
  /** Where it runs, relative to the source root (default: the root). */
  dir?: string;
  /** Variables for this step only, over the task's. */
  env?: Record<string, string>;
  /** Its stdout is the task's output (a unit listing), not part of the log. */
  capture?: boolean;
  /** The step that fetches Go modules: a failure to reach the proxy is the machine's, not the commit's. */
  fetchesModules?: boolean;
  /**
   * A test step: a make-only trybot leaves it out, and one that names its tests runs `argv` with the names in place
   * of everything after the first `fixedArgs` (`go test PKGS` -> `go test NAMES`).
   */
  test?: { fixedArgs: number };
  /** Several test units run at once (a batched `dist test`): each package's result line ends its unit's outcome. */
  units?: { name: string; package: string }[];
}

/** How a sharded builder's tests are listed and run: a Go module's packages, or the Go tree's `dist test` units. */
export type TestSuiteKind = 'go-module' | 'go-tree';

/**
 * A builder that makes once and tests in shards: its make steps run on one worker, which then lists the test units
 * and snapshots the built tree; shard workers unpack the snapshot and each runs its share of the units.
 */
export interface TestSuite {
  kind: TestSuiteKind;
  /** Run in order on the make worker; then `list`, whose stdout is the unit listing. */
  make: Step[];
  list: Step;
  /** Variables every unit step runs with, over the task's. */
  unitEnv: Record<string, string>;
  /** Shards for post-submit builds and for trybots. */
  shards: { postSubmit: number; trybot: number };
  /** Paths under the source root left out of the snapshot (build caches the shards do not need). */
  snapshotExclude: string[];
  /** The largest snapshot the make worker may upload. */
  snapshotMaxBytes: number;
  /** Units that failed are run once more on a fresh worker, to tell flaky from failed. */
  retryFailed: boolean;
}

/** A builder as the pipeline uses it, resolved from config. */
export interface Builder {
  name: string;
  /** `host` runs in the process sandbox with the host's own tools; other host types name an environment. */
  hostType: string;
  /** Where it runs when `hostType` is not available on the runtime; never silently, the task records it. */
  fallbackHostType?: string;
  steps: Step[];
  /** Programs its steps take from the worker's PATH: a worker without one is an infra failure that names it. */
  tools: readonly string[];
  env: Record<string, string>;
  timeoutSeconds: number;
  maxLogBytes: number;
  /** The most a task's source or snapshot may unpack to: bytes of file contents, and entries. */
  unpack: { maxBytes: number; maxEntries: number };
  /** Attempts a task gets when its worker dies without a result, before the build is an infra failure. */
  maxAttempts: number;
  /** Whether the steps may reach the network; containers otherwise give them loopback only. */
  network: boolean;
  /** Whether its tasks may run on Spot VMs, where the host type offers them. */
  spot: boolean;
  /** Present when the builder makes once and tests in shards; `steps` is then unused. */
  tests?: TestSuite;
  /** A go-module builder's dependencies: where a fetch task gets them. Absent: nothing is fetched (GOPROXY=off). */
  modules?: GoModules;
}

/** Where a Go module's dependencies come from, and which packages need them. */
export interface GoModules {
  /** A GOPROXY value: proxy URLs, `file://` directories in the proxy layout, `direct`, separated by `,` or `|`. */
  proxy: string;
  /** A GOSUMDB value, or `off`. */
  sumDb: string;
  /** The packages the builder vets, builds and tests: their dependencies are what is fetched. */
  packages: string[];
}

/**
 * A build's module cache: being made by its fetch task (`fetch`, the build's current task), or `ready` in the blob
 * store under `key` (made by this build, or `reused` from an earlier one).
 */
export interface BuildModules {
  key: string;
  phase: 'fetch' | 'ready';
  reused?: boolean;
}

/** A repository on GitHub (or GitHub Enterprise), as its API names it. */
export interface GitHubRepo {
  owner: string;
  name: string;
}

/** A watched repository. `url` is a git remote URL or a local path. */
export interface Repo {
  name: string;
  url: string;
  /** Where it lives on GitHub, when it does: polled, reported and tried through GitHub's API. */
  github?: GitHubRepo;
  branches: string[];
  builders: string[];
  /** How many commits back the first poll of a branch builds. */
  backfill: number;
  /** Which builders a trybot request that names none gets; absent, the repo's own builders. */
  trybot?: TrybotBuilders;
}

/** A repo's trybot builders: its defaults, plus those that a rule adds when a change touches files it matches. */
export interface TrybotBuilders {
  builders: string[];
  paths: Array<{ match: string[]; builders: string[] }>;
}

/** Who may start trybots, and how long what GitHub said about someone is believed. */
export interface TrybotPolicy {
  /** GitHub logins, in lower case. */
  users: string[];
  /** Members of these organisations are trusted. */
  orgs: string[];
  /** Members of these teams ("org/team-slug") are trusted. */
  teams: Array<{ org: string; team: string }>;
  trustCacheSeconds: number;
  /** Requests one untrusted person may have waiting for approval at once; more are dropped. */
  maxWaitingPerRequester: number;
}

/** What a trybot runs: everything (`full`), the make step alone, or only the named test units. */
export type TryMode = { kind: 'full' } | { kind: 'make' } | { kind: 'tests'; tests: string[] };

export interface Commit {
  repo: string;
  hash: string;
  /** The commit's tree hash, when the source knows it: builds of the same tree can share a snapshot. */
  tree?: string;
  parents: string[];
  author: string;
  subject: string;
  /** Committer time, ms since the epoch. */
  committedAt: number;
  branch: string;
  /** Order of discovery: larger is newer. The dashboard lists commits by it. */
  seq: number;
}

export interface BranchState {
  repo: string;
  branch: string;
  /** The head as of the last successful poll. */
  head?: string;
  polledAt: number;
  /** Why the last poll failed, when it did. */
  error?: string;
}

export interface Build {
  id: string;
  repo: string;
  commit: string;
  builder: string;
  /** The commit's `seq`, copied so builds sort without a join. */
  seq: number;
  /** The commit's tree, copied from it when known: a sharded build's snapshot is keyed by it. */
  tree?: string;
  /** A trybot build (a change not yet merged): sharded builders use their trybot shard count. */
  trybot?: boolean;
  /** What a trybot build runs, when not everything. */
  mode?: TryMode;
  status: BuildStatus;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** Tasks started so far, across retries. */
  attempts: number;
  /** A whole build's current task. Sharded builds keep theirs in `sharding`. */
  taskId?: string;
  /** Its module cache, when its tree needs modules fetched. */
  modules?: BuildModules;
  /** How a sharded build is getting on: its make task, plan, shard tasks, retries and merged verdict. */
  sharding?: Sharding;
  /** Why the build failed or is an infra failure, in words. */
  reason?: string;
  reportedAt?: number;
  /** What its workers cost, in dollars, retries and lost workers included: the sum of its tasks' `costUsd` (absent: 0). */
  costUsd?: number;
}

/** Where a sharded build is: making the snapshot, running the shards, re-running failed units, or merged. */
export type ShardPhase = 'make' | 'test' | 'retry' | 'merged';

export interface Sharding {
  phase: ShardPhase;
  /** Where the snapshot of the built tree is, keyed by tree and builder. */
  snapshotKey: string;
  /** The snapshot was made by an earlier build of the same tree, so this build ran no make task. */
  snapshotReused?: boolean;
  /** The current attempt of the make task, when one ran. */
  makeTaskId?: string;
  /** The shard plan, recorded when the units were listed. */
  plan?: ShardPlan;
  /** Every planned unit's name in the order the listing gave: the merged log's order. */
  units?: string[];
  /** When the shard tasks were made, ms since the epoch: the start of the test phase's wall time. */
  testsStartedAt?: number;
  /** The current attempt of each shard task, by shard index. */
  shardTaskIds?: string[];
  /** The current attempt of each retry task (one per shard that had failed units). */
  retryTaskIds?: string[];
  /** The merged outcome, once merged. */
  summary?: TestSummary;
}

/** A merged run in numbers. Times are ms. */
export interface TestSummary {
  units: number;
  passed: number;
  failed: number;
  flaky: number;
  /** Units that failed on their first run and were run again. */
  retried: number;
  /** From the first shard's start to the last shard's (or retry's) end. */
  wallMs: number;
  /** The sum of every unit run's own time, retries included: what one worker would have spent. */
  aggregateMs: number;
  /** The make task's own time (0 when the snapshot was reused). */
  makeMs: number;
  /** The slowest shard's real time, beside the plan's estimate for it. */
  makespanMs: number;
  estimatedMakespanMs: number;
}

/** How one test unit ended on one worker. `not-run`: the shard's deadline came first. */
export type UnitStatus = 'passed' | 'failed' | 'timed-out' | 'not-run';

export interface UnitResult {
  name: string;
  status: UnitStatus;
  durationMs: number;
  exitCode: number | null;
  /** Where its output is in the task's log, as byte offsets [start, end). */
  log?: { start: number; end: number };
}

/** What a builder has learned of how long one of its test units takes, for the shard planner. */
export interface LearnedDuration {
  builder: string;
  unit: string;
  seconds: number;
  /** Observations folded in so far. */
  runs: number;
  /** The build that last updated it: a merge delivered twice learns once. */
  lastBuildId: string;
  updatedAt: number;
}

export interface StepOutcome {
  name: string;
  exitCode: number | null;
  signal?: string;
  durationMs: number;
}

/** The VM a worker ran on, for its cost. Workers on this machine (containers, the sandbox) have none. */
export interface Machine {
  /** A Compute Engine machine type, e.g. "e2-standard-4". */
  type: string;
  spot: boolean;
  /** Its boot disk, billed for as long as the VM. */
  diskGb?: number;
  /** The boot disk's Compute Engine disk type ("pd-balanced"), which sets its price. */
  diskType?: string;
}

export interface Task {
  id: string;
  buildId: string;
  repo: string;
  commit: string;
  builder: string;
  /** `build` (a whole build), `make`, `shard-<i>` or `retry-<i>`. */
  step: string;
  attempt: number;
  status: TaskStatus;
  /** A trybot build's mode, copied from the build: what a whole-build task runs of its builder's steps. */
  mode?: TryMode;
  /** What a shard or retry task runs, in listing order; its steps are these units. */
  units?: PlannedUnit[];
  /** How each of `units` ended, from the worker's result. */
  unitResults?: UnitResult[];
  /** A make task's snapshot, as its worker reported it. */
  snapshot?: { bytes: number; files: number; packSeconds: number; uploadSeconds: number };
  /** Seconds the worker took to download and unpack its source or snapshot, and its module cache if it had one. */
  sourceSeconds?: number;
  createdAt: number;
  /** The host type its worker ran on, set at launch. */
  hostType?: string;
  /** The machine its worker ran on, set at launch when the compute bills by machine. */
  machine?: Machine;
  /** What its worker cost, in dollars, set when it finished: 0 on this machine, absent for an unpriced machine. */
  costUsd?: number;
  launchedAt?: number;
  /** When the worker is killed, ms since the epoch; set at launch. */
  deadline?: number;
  /** As reported by the agent. */
  startedAt?: number;
  workerFinishedAt?: number;
  finishedAt?: number;
  steps?: StepOutcome[];
  logBytes?: number;
  logTruncated?: boolean;
  reason?: string;
}

/** Where a trybot request stands: waiting for a trusted person, refused, or accepted with its builds. */
export type TryStatus = 'waiting-approval' | 'rejected' | 'accepted';

/** One trybot request of one exact commit, however often and by however many people it was asked for. */
export interface TryRun {
  id: string;
  repo: string;
  commit: string;
  tree?: string;
  pullRequest?: number;
  ref?: string;
  mode: TryMode;
  /** The builders asked for by name, when they were. */
  requestedBuilders?: string[];
  /** Who asked first, in lower case: the flood limit counts waiting requests by it. */
  requestedBy: string;
  /** Everyone who asked, in the order they did. */
  requesters: string[];
  status: TryStatus;
  /** Why it waits or was refused, in words. */
  reason?: string;
  /** The trusted person whose request ran it, or who approved it for this commit. */
  acceptedBy?: string;
  /** One per builder once accepted; `reused` when an earlier build of the same tree gave the verdict. */
  builds: Array<{ builder: string; buildId: string; reused: boolean }>;
  createdAt: number;
  updatedAt: number;
}

/** The verdict a builder gave a tree in a mode: what a later request for the same tree and builder reuses. */
export interface Verdict {
  tree: string;
  builder: string;
  mode: string;
  buildId: string;
  status: BuildStatus;
  finishedAt: number;
}

/** What the trust check last learned about a GitHub login from its organisations and teams. */
export interface TrustRecord {
  login: string;
  trusted: boolean;
  /** The organisation or team that made it trusted. */
  via?: string;
  checkedAt: number;
}
