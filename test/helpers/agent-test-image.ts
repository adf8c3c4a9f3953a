import type Docker from 'dockerode';
import { ensureImages } from '../../shared/images/build-images.ts';

/** The host type whose image tests run workers in: the plain Go builder of this machine's architecture. */
export const testHostType = process.arch === 'arm64' ? 'linux-arm64' : 'linux-amd64';

/** Whether a Docker engine answers. */
export async function dockerAnswers(docker: Docker): Promise<boolean> {
  try {
    await docker.ping();
    return true;
  } catch {
    return false;
  }
}

/**
 * The tag of the real worker image of `testHostType`, built from its recipe (infra/env/) when its tag is missing;
 * the tag is a hash of the recipe, the agent and Node, so runs reuse it until one of them changes.
 */
export async function testWorkerImage(docker: Docker): Promise<string> {
  const images = await ensureImages({ docker, hostTypes: [testHostType] });
  const tag = images.get(testHostType);
  if (tag === undefined) throw new Error(`the ${testHostType} image cannot be built on this host`);
  return tag;
}
