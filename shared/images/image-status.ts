import type Docker from 'dockerode';
import { describeError } from '../core/errors.ts';
import { createTagResolver, envDirOf, type ImagesOptions } from './build-images.ts';
import { checkHostType } from './check-host-type.ts';
import { createHostProbe } from './host-probe.ts';
import { listHostTypes } from './host-types.ts';
import { imageExists } from './image-exists.ts';

/** One host type as `hermetic images list` shows it. */
export interface ImageStatus {
  hostType: string;
  description: string;
  platform: string;
  /** Undefined when the tag cannot be worked out (see `error`). */
  tag: string | undefined;
  /** Whether the engine has the image; undefined without an engine or a tag. */
  built: boolean | undefined;
  available: boolean;
  /** Why it is not available, or why its tag or state is unknown. */
  reason: string | undefined;
}

/**
 * Every host type with its tag, whether its image exists, and whether it can run here. Never throws for one host
 * type's trouble (it lands in `reason`); with no `docker`, `built` is undefined.
 */
export async function imageStatus(options: ImagesOptions & { docker?: Docker }): Promise<ImageStatus[]> {
  const probe = options.probe ?? createHostProbe();
  const types = await listHostTypes(envDirOf(options));
  const tagOf = createTagResolver({ ...options, probe });
  const statuses: ImageStatus[] = [];
  for (const type of types) {
    const reasons: string[] = [];
    const availability = await checkHostType(type, { probe });
    if (!availability.available) reasons.push(availability.reason);
    let tag: string | undefined;
    try {
      tag = await tagOf(type);
    } catch (error) {
      reasons.push(`tag unknown: ${describeError(error)}`);
    }
    let built: boolean | undefined;
    if (tag !== undefined && options.docker !== undefined) {
      try {
        built = await imageExists(options.docker, tag);
      } catch (error) {
        reasons.push(`cannot ask the Docker engine: ${describeError(error)}`);
      }
    }
    statuses.push({
      hostType: type.name,
      description: type.description,
      platform: type.platform,
      tag,
      built,
      available: availability.available,
      reason: reasons.length > 0 ? reasons.join('; ') : undefined,
    });
  }
  return statuses;
}
