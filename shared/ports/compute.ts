import type { Endpoint } from '../core/model/endpoints.ts';
import type { Machine } from '../core/model/types.ts';
import type { TaskSpec } from '../core/model/wire.ts';

/** The compute port: one throwaway worker per task, gone when the task is done or its deadline passes. */

export interface WorkerRequest {
  taskId: string;
  hostType: string;
  /** Everything the worker is given. */
  spec: TaskSpec;
  /** ms since the epoch; the worker and everything it started are killed then. */
  deadline: number;
  labels: Record<string, string>;
  /** The builder lets its steps reach the network; adapters that cut it off otherwise leave it on. */
  network?: boolean;
  /**
   * Directories of the machine that runs the pipeline which the worker must read at the same paths (a `file://`
   * module proxy). Adapters whose workers share that file system ignore it; those whose workers run elsewhere refuse.
   */
  readOnlyPaths?: string[];
  /**
   * With `network`: the only places the steps need (a module fetch: its proxies and checksum database). Adapters that
   * can hold a worker to them do (a Compute Engine container worker, which also reaches its own signed URLs' host);
   * the others give the network whole.
   */
  egress?: Endpoint[];
  /** The builder allows Spot VMs; adapters without them ignore it. */
  spot?: boolean;
}

/** How a worker ended, as its compute adapter saw it. */
export interface WorkerExit {
  taskId: string;
  reason: 'exited' | 'deadline' | 'vanished';
  code: number | null;
  signal: string | null;
}

export interface WorkerInfo {
  taskId: string;
  deadline: number;
  labels: Record<string, string>;
}

export interface Compute {
  /** Host types this adapter can run. */
  readonly hostTypes: readonly string[];
  /** Starts the task's worker. Idempotent by task ID: a task that already had a worker gets no second one. */
  start(request: WorkerRequest): Promise<void>;
  /** Kills and removes the task's worker, if any. */
  stop(taskId: string): Promise<void>;
  /** Workers alive now. */
  list(): Promise<WorkerInfo[]>;
  /** Kills every worker this adapter started; nothing it started is left running. */
  close(): Promise<void>;
  /**
   * Which of `programs` a worker of `hostType` would not find on its PATH, where the adapter can tell before starting
   * one (the process sandbox runs the host's own tools); absent where it cannot, and the worker's exit tells.
   */
  missingPrograms?(hostType: string, programs: readonly string[]): Promise<string[]>;
  /** Why a host type it does not run is not available here, when it knows (no Docker engine, no qemu, ...). */
  unavailableReason?(hostType: string): string | undefined;
  /**
   * The machine a host type's workers run on (Spot only where the host type offers it and `spotAllowed`), where
   * workers are billed by machine (VMs); absent or undefined otherwise.
   */
  machineOf?(hostType: string, spotAllowed: boolean): Machine | undefined;
}

/** Called by a compute adapter when one of its workers ends, however it ended. */
export type OnWorkerExit = (exit: WorkerExit) => void;
