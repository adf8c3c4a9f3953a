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
}

/** A builder as the pipeline uses it, resolved from config. */
export interface Builder {
  name: string;
  /** `host` runs in the process sandbox with the host's own tools; other host types name an environment. */
  hostType: string;
  /** Where it runs when `hostType` is not available on the runtime; never silently, the task records it. */
  fallbackHostType?: string;
  steps: Step[];
  env: Record<string, string>;
  timeoutSeconds: number;
  maxLogBytes: number;
  /** Attempts a task gets when its worker dies without a result, before the build is an infra failure. */
  maxAttempts: number;
  /** Whether the steps may reach the network; containers otherwise give them loopback only. */
  network: boolean;
}

/** A watched repository. `url` is a git remote URL or a local path. */
export interface Repo {
  name: string;
  url: string;
  branches: string[];
  builders: string[];
  /** How many commits back the first poll of a branch builds. */
  backfill: number;
}

export interface Commit {
  repo: string;
  hash: string;
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
  status: BuildStatus;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** Tasks started so far, across retries. */
  attempts: number;
  taskId?: string;
  /** Why the build failed or is an infra failure, in words. */
  reason?: string;
  reportedAt?: number;
}

export interface StepOutcome {
  name: string;
  exitCode: number | null;
  signal?: string;
  durationMs: number;
}

export interface Task {
  id: string;
  buildId: string;
  repo: string;
  commit: string;
  builder: string;
  step: string;
  attempt: number;
  status: TaskStatus;
  createdAt: number;
  /** The host type its worker ran on, set at launch. */
  hostType?: string;
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
