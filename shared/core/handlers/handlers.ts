import type { IncomingMessage, ServerResponse } from 'node:http';
import { createDashboard } from '../dashboard/dashboard.ts';
import { BuildFinished, BuildMoved, BuildRequested, PollTick, ReapTick, ResultLanded, TaskFinished, TaskReady, TestsFinished, topics, TryRequested } from '../model/messages.ts';
import type { DeadLetters } from '../../ports/messages.ts';
import { createCollect } from './collect.ts';
import type { PipelineDeps } from '../pipeline/deps.ts';
import { createLaunch } from './launch.ts';
import { abandonMerge, createMerge } from './merge.ts';
import { finishTask } from '../pipeline/finish-task.ts';
import { abandonPlan, createPlan } from './plan.ts';
import { createPoll } from './poll.ts';
import { createReap } from './reap.ts';
import { createProgress } from './progress.ts';
import { createReport } from './report.ts';
import { createTry } from './try.ts';
import { messageHandler, type MessageHandler } from './message-handler.ts';
import { createWebhook } from '../trybots/webhook-http.ts';

/** What the handlers need: the pipeline's deps and a place for dead letters. */
export interface HandlerDeps extends PipelineDeps {
  deadLetters: DeadLetters;
  /** Deliveries of one message before its function gives up on it (the subscription's max delivery attempts). */
  maxDeliveryAttempts: number;
  /** The secret GitHub signs webhook deliveries with; without it the webhook refuses every delivery. */
  webhookSecret?: string;
  /** The `Host` values the dashboard answers; without them, any (see DashboardDeps.hosts). */
  dashboardHosts?: readonly string[];
}

/** Each message handler and the topic it listens on. One place, used by every runtime and by deploy. */
export const handlerTopics = {
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
} as const;
export type HandlerName = keyof typeof handlerTopics;

export interface Handlers {
  message: Record<HandlerName, MessageHandler>;
  /** Takes Node's request and response, so it serves both functions-framework (Express) and `node:http`. */
  dashboard: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** GitHub's webhook deliveries: `/try` comments on pull requests. */
  webhook: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
}

/** Builds every handler over one set of deps. Creates no client and does no I/O. */
export function createHandlers(deps: HandlerDeps): Handlers {
  const wrap = { logger: deps.logger, maxAttempts: deps.maxDeliveryAttempts };
  // A task whose launch or collection keeps failing counts as a lost worker: retried on a fresh one, then shown.
  const loseTask = (what: string) => (message: { taskId: string }, reason: string) =>
    finishTask(deps, message.taskId, { status: 'lost', reason: `${what} ${reason}` });
  const collect = createCollect(deps);
  const message = {
    poll: messageHandler({ ...wrap, topic: handlerTopics.poll, schema: PollTick, handle: createPoll(deps) }),
    reap: messageHandler({ ...wrap, topic: handlerTopics.reap, schema: ReapTick, handle: createReap(deps) }),
    plan: messageHandler({
      ...wrap,
      topic: handlerTopics.plan,
      schema: BuildRequested,
      handle: createPlan(deps),
      giveUp: (message, reason) => abandonPlan(deps, message.buildId, reason),
    }),
    launch: messageHandler({
      ...wrap,
      topic: handlerTopics.launch,
      schema: TaskReady,
      handle: createLaunch(deps),
      giveUp: loseTask('launch'),
    }),
    collect: messageHandler({
      ...wrap,
      topic: handlerTopics.collect,
      schema: TaskFinished,
      handle: collect,
      giveUp: loseTask('collect'),
    }),
    // A result landed: collect its task at once (no second hop through task-finished).
    landed: messageHandler({
      ...wrap,
      topic: handlerTopics.landed,
      schema: ResultLanded,
      handle: (landed) => collect({ v: 1, taskId: landed.taskId, cause: 'result' }),
      giveUp: loseTask('collect'),
    }),
    merge: messageHandler({
      ...wrap,
      topic: handlerTopics.merge,
      schema: TestsFinished,
      handle: createMerge(deps),
      giveUp: (message, reason) => abandonMerge(deps, message.buildId, reason),
    }),
    report: messageHandler({ ...wrap, topic: handlerTopics.report, schema: BuildFinished, handle: createReport(deps) }),
    progress: messageHandler({ ...wrap, topic: handlerTopics.progress, schema: BuildMoved, handle: createProgress(deps) }),
    trybot: messageHandler({ ...wrap, topic: handlerTopics.trybot, schema: TryRequested, handle: createTry(deps) }),
  } satisfies Record<HandlerName, MessageHandler>;
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
