import type { BuildFinished, BuildMoved, BuildRequested, PollTick, ReapTick, ResultLanded, TaskFinished, TaskReady, TestsFinished, TryRequested } from '../model/messages.ts';
import { topics } from '../model/messages.ts';
import type { Publisher } from '../../ports/messages.ts';

/** The attribute each message names its topic in, so a dead-lettered one still says where it was going. */
export const topicAttribute = 'hermetic-topic';

interface MessageOf {
  [topics.pollTick]: PollTick;
  [topics.reapTick]: ReapTick;
  [topics.buildRequested]: BuildRequested;
  [topics.taskReady]: TaskReady;
  [topics.taskFinished]: TaskFinished;
  [topics.resultLanded]: ResultLanded;
  [topics.testsFinished]: TestsFinished;
  [topics.buildFinished]: BuildFinished;
  [topics.buildMoved]: BuildMoved;
  [topics.tryRequested]: TryRequested;
}

/** Publishes a typed message as JSON on its topic; resolves once it is durable. */
export function publishMessage<T extends keyof MessageOf>(
  publisher: Publisher,
  topic: T,
  message: MessageOf[T],
): Promise<string> {
  return publisher.publish(topic, Buffer.from(JSON.stringify(message)), { [topicAttribute]: topic });
}
