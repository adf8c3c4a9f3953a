import type { BuildFinished, BuildMoved, BuildRequested, ObjectFinalized, PollTick, ReapTick, TaskFinished, TaskReady, TestsFinished, TryRequested } from '../model/messages.ts';
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

/**
 * Publishes an object's landing as Cloud Storage's bucket notifications do (OBJECT_FINALIZE, JSON_API_V1), so the
 * embedded blob server wakes `landed` exactly as a bucket does on Google Cloud.
 */
export function publishObjectFinalized(publisher: Publisher, object: ObjectFinalized): Promise<string> {
  const attributes: Record<string, string> = {
    eventType: 'OBJECT_FINALIZE',
    payloadFormat: 'JSON_API_V1',
    bucketId: object.bucket,
    objectId: object.name,
  };
  if (object.generation !== undefined) attributes['objectGeneration'] = object.generation;
  return publisher.publish(topics.resultLanded, Buffer.from(JSON.stringify(object)), attributes);
}
