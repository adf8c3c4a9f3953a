import { topics } from '../../shared/core/model/messages.ts';
import type { ObjectFinalized } from '../../shared/adapters/gcp/object-notification.ts';
import type { Publisher } from '../../shared/ports/messages.ts';
import { resultNotification } from '../../shared/runtimes/google-cloud/deploy-plan.ts';

/**
 * Plays the bucket notification the deploy sets up, for a fake Cloud Storage's `onFinalized`: an object finalized
 * under results/ is published to result-landed as Cloud Storage does (OBJECT_FINALIZE, JSON_API_V1); others are not.
 */
export function notifyResultLanded(publisher: Publisher, object: ObjectFinalized): void {
  if (!object.name.startsWith(resultNotification.prefix)) return;
  const attributes: Record<string, string> = {
    eventType: 'OBJECT_FINALIZE',
    payloadFormat: 'JSON_API_V1',
    bucketId: object.bucket,
    objectId: object.name,
  };
  if (object.generation !== undefined) attributes['objectGeneration'] = object.generation;
  void publisher.publish(topics.resultLanded, Buffer.from(JSON.stringify(object)), attributes);
}
