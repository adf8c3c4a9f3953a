import { z } from 'zod';
import type { InboundMessage } from '../../core/handlers/message-handler.ts';
import { decode, topics, type ResultLanded } from '../../core/model/messages.ts';
import { taskIdOfResultKey } from '../../core/model/wire.ts';
import type { Logger } from '../../ports/log.ts';

/**
 * Cloud Storage's object resource, as a bucket notification (payload format JSON_API_V1) carries it: not ours, so not
 * versioned and not strict; only the fields read here are checked.
 */
export const ObjectFinalized = z.object({
  bucket: z.string().min(1),
  name: z.string().min(1),
  generation: z.string().optional(),
  size: z.string().optional(),
});
export type ObjectFinalized = z.infer<typeof ObjectFinalized>;

/** Whether a message is a Cloud Storage notification of a finalized object. */
export function isObjectFinalized(attributes: Record<string, string>): boolean {
  return attributes['eventType'] === 'OBJECT_FINALIZE';
}

/**
 * The result-landed message a Cloud Storage notification on the result-landed topic stands for: the task whose result
 * object was finalized. A message that is no notification passes unchanged; a notification of any other object is
 * logged and answered undefined (nothing to do); one that names no object throws PermanentError.
 */
export function resultLandedOf(message: InboundMessage, logger: Logger): InboundMessage | undefined {
  if (!isObjectFinalized(message.attributes)) return message;
  const object = decode(ObjectFinalized, message.data, `${topics.resultLanded} message`);
  const taskId = taskIdOfResultKey(object.name);
  if (taskId === undefined) {
    logger.warn('landed.ignored', { bucket: object.bucket, object: object.name });
    return undefined;
  }
  const landed: ResultLanded = { v: 1, taskId };
  return { ...message, data: Buffer.from(JSON.stringify(landed)) };
}
