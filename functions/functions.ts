import type { IncomingMessage, ServerResponse } from 'node:http';
import { createDashboard } from '../shared/dashboard/dashboard.ts';
import { BuildFinished, BuildMoved, BuildRequested, ObjectFinalized, PollTick, ReapTick, TaskFinished, TaskReady, TestsFinished, topics, TryRequested } from '../shared/model/messages.ts';
import { taskIdOfResultKey } from '../shared/model/wire.ts';
import type { DeadLetters } from '../shared/ports/messages.ts';
import { createCollect } from '../shared/pipeline/collect.ts';
import type { PipelineDeps } from '../shared/pipeline/deps.ts';
import { createLaunch } from '../shared/pipeline/launch.ts';
import { abandonMerge, createMerge } from '../shared/pipeline/merge.ts';
import { finishTask } from '../shared/pipeline/finish-task.ts';
import { abandonPlan, createPlan } from '../shared/pipeline/plan.ts';
import { createPoll } from '../shared/pipeline/poll.ts';
import { createReap } from '../shared/pipeline/reap.ts';
import { createProgress, createReport } from '../shared/pipeline/report.ts';
import { createTry } from '../shared/pipeline/try.ts';
import { deadLetterFunction, pubsubFunction, type PubsubFunction } from './pubsub-function.ts';
import { createWebhook } from './webhook.ts';

/** What the entry points need: the pipeline's deps and a place for dead letters. */
export interface FunctionDeps extends PipelineDeps {
  deadLetters: DeadLetters;
  /** Deliveries of one message before its function gives up on it (the subscription's max delivery attempts). */
  maxDeliveryAttempts: number;
  /** The secret GitHub signs webhook deliveries with; without it the webhook refuses every delivery. */
  webhookSecret?: string;
  /** The `Host` values the dashboard answers; without them, any (see DashboardDeps.hosts). */
  dashboardHosts?: readonly string[];
}

/** Each message-triggered function and the topic it listens on. One place, used by every runtime and by deploy. */
export const triggers = {
  poll: topics.pollTick,
  reap: topics.reapTick,
  plan: topics.buildRequested,
  launch: topics.taskReady,
  collect: topics.taskFinished,
  landed: topics.resultLanded,
  merge: topics.testsFinished,
  report: topics.buildFinished,
  progress: topics.buildMoved,
  trybot: topics.tryRequested,
  deadLetter: topics.deadLetters,
} as const;
export type MessageFunctionName = keyof typeof triggers;

export interface Functions {
  message: Record<MessageFunctionName, PubsubFunction>;
  /** Takes Node's request and response, so it serves both functions-framework (Express) and `node:http`. */
  dashboard: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** GitHub's webhook deliveries: `/try` comments on pull requests. */
  webhook: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
}

/** Builds every entry point over one set of deps. Creates no client and does no I/O. */
export function createFunctions(deps: FunctionDeps): Functions {
  const wrap = { deadLetters: deps.deadLetters, logger: deps.logger, maxAttempts: deps.maxDeliveryAttempts };
  // A task whose launch or collection keeps failing counts as a lost worker: retried on a fresh one, then shown.
  const loseTask = (what: string) => (message: { taskId: string }, reason: string) =>
    finishTask(deps, message.taskId, { status: 'lost', reason: `${what} ${reason}` });
  const collect = createCollect(deps);
  // A result object landed: collect its task at once (no second hop through task-finished).
  const resultTask = (object: ObjectFinalized): { taskId: string } | undefined => {
    const taskId = taskIdOfResultKey(object.name);
    if (taskId === undefined) deps.logger.warn('landed.ignored', { bucket: object.bucket, object: object.name });
    return taskId === undefined ? undefined : { taskId };
  };
  const byTopic = new Map<string, PubsubFunction>();
  const message = {
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
      handle: collect,
      giveUp: loseTask('collect'),
    }),
    landed: pubsubFunction({
      ...wrap,
      topic: triggers.landed,
      schema: ObjectFinalized,
      handle: async (object) => {
        const task = resultTask(object);
        if (task !== undefined) await collect({ v: 1, taskId: task.taskId, cause: 'result' });
      },
      giveUp: async (object, reason) => {
        const task = resultTask(object);
        if (task !== undefined) await loseTask('collect')(task, reason);
      },
    }),
    merge: pubsubFunction({
      ...wrap,
      topic: triggers.merge,
      schema: TestsFinished,
      handle: createMerge(deps),
      giveUp: (message, reason) => abandonMerge(deps, message.buildId, reason),
    }),
    report: pubsubFunction({ ...wrap, topic: triggers.report, schema: BuildFinished, handle: createReport(deps) }),
    progress: pubsubFunction({ ...wrap, topic: triggers.progress, schema: BuildMoved, handle: createProgress(deps) }),
    trybot: pubsubFunction({ ...wrap, topic: triggers.trybot, schema: TryRequested, handle: createTry(deps) }),
    deadLetter: deadLetterFunction({
      deadLetters: deps.deadLetters,
      logger: deps.logger,
      functionOf: (topic) => byTopic.get(topic),
    }),
  } satisfies Record<MessageFunctionName, PubsubFunction>;
  for (const name of Object.keys(triggers) as MessageFunctionName[]) byTopic.set(triggers[name], message[name]);
  return {
    message,
    dashboard: createDashboard({
      catalog: deps.catalog,
      state: deps.state,
      blobs: deps.blobs,
      deadLetters: deps.deadLetters,
      logger: deps.logger,
      baseUrl: deps.options.dashboardUrl,
      ...(deps.dashboardHosts === undefined ? {} : { hosts: deps.dashboardHosts }),
    }),
    webhook: createWebhook({ secret: deps.webhookSecret, catalog: deps.catalog, github: deps.github, publisher: deps.publisher, logger: deps.logger }),
  };
}
