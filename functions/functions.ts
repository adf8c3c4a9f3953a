import type { IncomingMessage, ServerResponse } from 'node:http';
import { createDashboard } from '../shared/dashboard/dashboard.ts';
import { BuildFinished, BuildRequested, PollTick, ReapTick, TaskFinished, TaskReady, TestsFinished, topics } from '../shared/model/messages.ts';
import type { DeadLetters } from '../shared/ports/messages.ts';
import { createCollect } from '../shared/pipeline/collect.ts';
import type { PipelineDeps } from '../shared/pipeline/deps.ts';
import { createLaunch } from '../shared/pipeline/launch.ts';
import { abandonMerge, createMerge } from '../shared/pipeline/merge.ts';
import { finishTask } from '../shared/pipeline/finish-task.ts';
import { abandonPlan, createPlan } from '../shared/pipeline/plan.ts';
import { createPoll } from '../shared/pipeline/poll.ts';
import { createReap } from '../shared/pipeline/reap.ts';
import { createReport } from '../shared/pipeline/report.ts';
import { pubsubFunction, type PubsubFunction } from './pubsub-function.ts';

/** What the entry points need: the pipeline's deps and a place for dead letters. */
export interface FunctionDeps extends PipelineDeps {
  deadLetters: DeadLetters;
  /** Deliveries of one message before its function gives up on it (the subscription's max delivery attempts). */
  maxDeliveryAttempts: number;
}

/** Each message-triggered function and the topic it listens on. One place, used by every runtime and by deploy. */
export const triggers = {
  poll: topics.pollTick,
  reap: topics.reapTick,
  plan: topics.buildRequested,
  launch: topics.taskReady,
  collect: topics.taskFinished,
  merge: topics.testsFinished,
  report: topics.buildFinished,
} as const;
export type MessageFunctionName = keyof typeof triggers;

export interface Functions {
  message: Record<MessageFunctionName, PubsubFunction>;
  /** Takes Node's request and response, so it serves both functions-framework (Express) and `node:http`. */
  dashboard: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
}

/** Builds every entry point over one set of deps. Creates no client and does no I/O. */
export function createFunctions(deps: FunctionDeps): Functions {
  const wrap = { deadLetters: deps.deadLetters, logger: deps.logger, maxAttempts: deps.maxDeliveryAttempts };
  // A task whose launch or collection keeps failing counts as a lost worker: retried on a fresh one, then shown.
  const loseTask = (what: string) => (message: { taskId: string }, reason: string) =>
    finishTask(deps, message.taskId, { status: 'lost', reason: `${what} ${reason}` });
  return {
    message: {
      poll: pubsubFunction({ ...wrap, topic: triggers.poll, schema: PollTick, handle: createPoll(deps) }),
      reap: pubsubFunction({ ...wrap, topic: triggers.reap, schema: ReapTick, handle: createReap(deps) }),
      plan: pubsubFunction({
        ...wrap,
        topic: triggers.plan,
        schema: BuildRequested,
        handle: createPlan(deps),
        giveUp: (message, reason) => abandonPlan(deps, message.buildId, reason),
      }),
      launch: pubsubFunction({
        ...wrap,
        topic: triggers.launch,
        schema: TaskReady,
        handle: createLaunch(deps),
        giveUp: loseTask('launch'),
      }),
      collect: pubsubFunction({
        ...wrap,
        topic: triggers.collect,
        schema: TaskFinished,
        handle: createCollect(deps),
        giveUp: loseTask('collect'),
      }),
      merge: pubsubFunction({
        ...wrap,
        topic: triggers.merge,
        schema: TestsFinished,
        handle: createMerge(deps),
        giveUp: (message, reason) => abandonMerge(deps, message.buildId, reason),
      }),
      report: pubsubFunction({ ...wrap, topic: triggers.report, schema: BuildFinished, handle: createReport(deps) }),
    },
    dashboard: createDashboard({
      catalog: deps.catalog,
      state: deps.state,
      blobs: deps.blobs,
      deadLetters: deps.deadLetters,
      logger: deps.logger,
      baseUrl: deps.options.dashboardUrl,
    }),
  };
}
