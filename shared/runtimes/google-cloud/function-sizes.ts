import type { MessageFunctionName } from './functions.ts';

/**
 * How much memory and CPU each function gets on Cloud Functions, and the dashboard on App Engine, from what
 * `bench/function-memory.ts` measured: each function in a process of its own, through functions-framework, handling
 * real events of a whole build over the local emulators and fakes. A figure is the process's resident high-water mark
 * (VmHWM), plus the largest of its child processes' (git), plus what it left in its /tmp: on Cloud Functions /tmp is
 * memory, counted against the same limit.
 *
 * The headroom rule (`sizeFor`): memory is the smallest Cloud Run step at least 1.5 times the figure, since the heap
 * grows with what one event carries (a bigger log, more tasks) and a function over its limit is killed mid-event;
 * and never below 512 MiB: every function loads the same clients, about 170 MiB, which 1.5 times puts on the very
 * edge of 256 MiB, where one run's noise would decide (the other 256 MiB costs little: memory is billed only while an
 * event is handled, about $0.0000025 a GiB-second in us-central1). CPU is one vCPU, so a cold start (loading the
 * client libraries: seconds of CPU) is not stretched six-fold as at the default 0.167; it too is billed only while an
 * event is handled. Run the bench again after a change that loads more: it prints the sizes this rule gives, and the
 * unit test holds this table to the rule.
 *
 * poll, launch and trybot mirror a watched git remote into /tmp; for them the size is for the Go repository's whole
 * history, extrapolated by the bench from a mirror of one Go tree (see its output and the README). plan mirrors and
 * archives a commit too, for a go-module builder (to read its go.mod and go.sum files): it is sized as launch, which
 * does the same with any repository.
 */

/** A function's measurement and the size chosen from it. */
export interface FunctionSize {
  /** What the bench measured, MiB. */
  measuredMiB: number;
  /** The figure the size is chosen for, where it is not the measurement (an extrapolation), MiB. */
  sizedForMiB?: number;
  /** `--memory`, MiB. */
  memoryMiB: number;
  /** `--cpu`, vCPUs. */
  cpu: number;
}

/** The functions deployed to Cloud Functions: every message function and the webhook. */
export type CloudFunctionName = MessageFunctionName | 'webhook';

/** Cloud Run's memory sizes the rule picks from, MiB (with 1 vCPU Cloud Run allows up to 4 GiB). */
const memorySteps = [512, 1024, 2048, 4096] as const;

/** How much more than the measured peak a function gets. */
export const headroom = 1.5;

/** The headroom rule: the size for a figure in MiB. Throws past the largest step, which needs more than one vCPU. */
export function sizeFor(figureMiB: number): Pick<FunctionSize, 'memoryMiB' | 'cpu'> {
  const memoryMiB = memorySteps.find((step) => step >= figureMiB * headroom);
  if (memoryMiB === undefined) throw new Error(`${figureMiB} MiB with ${headroom}x headroom is more than ${memorySteps.at(-1)} MiB`);
  return { memoryMiB, cpu: 1 };
}

/**
 * Measured with `node bench/function-memory.ts` (3 runs, medians), on a shared 2-core machine. poll, launch and trybot
 * each held a 28 MiB mirror of one Go 1.19 tree in /tmp, and launch its tarball in memory besides.
 */
export const functionSizes = {
  poll: { measuredMiB: 220, sizedForMiB: 809, memoryMiB: 2048, cpu: 1 },
  reap: { measuredMiB: 236, memoryMiB: 512, cpu: 1 },
  plan: { measuredMiB: 170, sizedForMiB: 1010, memoryMiB: 2048, cpu: 1 },
  launch: { measuredMiB: 422, sizedForMiB: 1010, memoryMiB: 2048, cpu: 1 },
  collect: { measuredMiB: 170, memoryMiB: 512, cpu: 1 },
  landed: { measuredMiB: 250, memoryMiB: 512, cpu: 1 },
  merge: { measuredMiB: 172, memoryMiB: 512, cpu: 1 },
  report: { measuredMiB: 174, memoryMiB: 512, cpu: 1 },
  progress: { measuredMiB: 178, memoryMiB: 512, cpu: 1 },
  trybot: { measuredMiB: 242, sizedForMiB: 829, memoryMiB: 2048, cpu: 1 },
  deadLetter: { measuredMiB: 171, memoryMiB: 512, cpu: 1 },
  webhook: { measuredMiB: 171, memoryMiB: 512, cpu: 1 },
} as const satisfies Record<CloudFunctionName, FunctionSize>;

/** App Engine's standard instance classes, with their memory in MiB (second-generation runtimes). */
export const appEngineClasses = { F1: 384, F2: 768, F4: 1536 } as const;

/** The dashboard's App Engine instance class: the smallest whose memory is at least `headroom` times the figure. */
export const dashboardSize = { measuredMiB: 187, instanceClass: 'F1' } as const satisfies { measuredMiB: number; instanceClass: keyof typeof appEngineClasses };
