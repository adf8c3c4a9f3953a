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

/**
 * The address containers on the engine's default bridge reach this host at: the gateway its IPAM config names or,
 * where the engine left that out (one that found its bridge interface already up does), the default route a
 * container of `image` on that bridge gets. Undefined when neither tells.
 */
export async function defaultBridgeGateway(docker: Docker, image: string): Promise<string | undefined> {
  const bridge = await docker.getNetwork('bridge').inspect();
  const named = (bridge.IPAM?.Config ?? []).map((config) => config.Gateway).find((ip) => ip?.includes('.') === true);
  if (named !== undefined) return named;
  const container = await docker.createContainer({
    Image: image,
    Entrypoint: ['cat', '/proc/net/route'],
    HostConfig: { NetworkMode: 'bridge' },
    Labels: { 'hermetic-test': 'bridge-gateway' },
  });
  try {
    await container.start();
    await container.wait();
    const routes = (await container.logs({ stdout: true, follow: false })).toString('latin1');
    // Iface, Destination, Gateway, ...: the default route has destination 0, its gateway in little-endian hex.
    const hex = /\s00000000\s+([0-9A-F]{8})\s/.exec(routes)?.[1];
    return hex === undefined ? undefined : [...Buffer.from(hex, 'hex').reverse()].join('.');
  } finally {
    await container.remove({ force: true });
  }
}
