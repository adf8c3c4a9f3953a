import type { BuildFinished, BuildRequested, PollTick, ReapTick, TaskFinished, TaskReady, TestsFinished } from '../model/messages.ts';
import { topics } from '../model/messages.ts';
import type { Publisher } from '../ports/messages.ts';

interface MessageOf {
  [topics.pollTick]: PollTick;
  [topics.reapTick]: ReapTick;
  [topics.buildRequested]: BuildRequested;
  [topics.taskReady]: TaskReady;
  [topics.taskFinished]: TaskFinished;
  [topics.testsFinished]: TestsFinished;
  [topics.buildFinished]: BuildFinished;
}

/** Publishes a typed message as JSON on its topic; resolves once it is durable. */
export function publishMessage<T extends keyof MessageOf>(
  publisher: Publisher,
  topic: T,
  message: MessageOf[T],
): Promise<string> {
  return publisher.publish(topic, Buffer.from(JSON.stringify(message)));
}
