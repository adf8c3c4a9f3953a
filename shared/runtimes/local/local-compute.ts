import Docker from 'dockerode';
import { createComputeRouter } from '../../adapters/compute-router.ts';
import { createDockerCompute } from '../../adapters/docker/docker-compute.ts';
import { engineProblem } from '../../adapters/docker/engine-problem.ts';
import { createProcessSandbox } from '../../adapters/local/process-sandbox.ts';
import { describeError } from '../../core/errors.ts';
import { ensureImages } from '../../images/build-images.ts';
import { checkHostType } from '../../images/check-host-type.ts';
import { listHostTypes } from '../../images/host-types.ts';
import type { Compute, OnWorkerExit } from '../../ports/compute.ts';
import type { Logger } from '../../ports/log.ts';

export interface LocalComputeOptions {
  /** The data directory's deployment ID (localDeploymentId): names the workers and their network. */
  deployment: string;
  workRoot: string;
  onExit: OnWorkerExit;
  logger: Logger;
  /** Container host types the configured builders ask for. */
  hostTypes: readonly string[];
  /** `off`: only the process sandbox, even where a Docker engine runs. */
  containers: 'auto' | 'off';
  isolation: 'auto' | 'pid-namespace' | 'process-group';
  /** Image build progress, for people. */
  onProgress: (line: string) => void;
}

export interface LocalCompute {
  compute: Compute;
  /** The address containers reach this host at, when containers run; the blob endpoint must listen there too. */
  workerHost: string | undefined;
}

/** How long a Docker engine may take to answer before the runtime goes on without one. */
export const engineTimeoutMs = 3_000;

/**
 * The embedded default's compute: containers for every host type the builders ask for whose image is (or can be
 * made) here, when a Docker engine answers; the process sandbox for `host`, and for builders that fall back to it.
 * Missing images are built first, with progress. Never fails for want of Docker or of an image: it says so, and
 * builders that cannot run get that reason as their verdict.
 */
export async function createLocalCompute(options: LocalComputeOptions): Promise<LocalCompute> {
  const { logger } = options;
  const sandbox = await createProcessSandbox({
    workRoot: options.workRoot,
    onExit: options.onExit,
    logger,
    isolation: options.isolation,
  });
  const wanted = [...new Set(options.hostTypes)].filter((hostType) => hostType !== 'host');
  const sandboxOnly = (why: string) => ({
    compute: createComputeRouter([sandbox], new Map(wanted.map((hostType) => [hostType, why]))),
    workerHost: undefined,
  });
  if (wanted.length === 0) return { compute: sandbox, workerHost: undefined };
  if (options.containers === 'off') return sandboxOnly('containers are turned off (--no-docker)');
  const docker = new Docker();
  const problem = await engineProblem(docker, engineTimeoutMs);
  if (problem !== undefined) {
    const reason = `no Docker engine answers (${problem})`;
    logger.warn('docker.unavailable', { reason, hostTypes: wanted.join(', ') });
    return sandboxOnly(reason);
  }
  const known = new Map((await listHostTypes()).map((hostType) => [hostType.name, hostType]));
  let images: Map<string, string>;
  try {
    images = await ensureImages({
      docker,
      hostTypes: wanted.filter((hostType) => known.has(hostType)),
      onProgress: options.onProgress,
    });
  } catch (error) {
    const reason = `its image could not be built (${describeError(error)})`;
    logger.error('images.failed', { reason });
    return sandboxOnly(reason);
  }
  const unavailable = new Map<string, string>();
  for (const hostType of wanted.filter((name) => !images.has(name))) {
    const recipe = known.get(hostType);
    const availability = recipe === undefined ? undefined : await checkHostType(recipe);
    unavailable.set(
      hostType,
      recipe === undefined
        ? `no recipe for it under infra/env/ (known: ${[...known.keys()].join(', ')})`
        : availability?.available === false
          ? availability.reason
          : 'its image could not be made',
    );
  }
  if (images.size === 0) return { compute: createComputeRouter([sandbox], unavailable), workerHost: undefined };
  const network = `hermetic-${options.deployment}`;
  const containers = await createDockerCompute({
    docker,
    images,
    platforms: new Map([...images.keys()].map((hostType) => [hostType, known.get(hostType)?.platform ?? 'linux/amd64'])),
    deployment: options.deployment,
    network,
    onExit: options.onExit,
    logger,
  });
  logger.info('compute.containers', { hostTypes: [...images.keys()].join(', '), gateway: containers.gatewayIp });
  const router = createComputeRouter([containers, sandbox], unavailable);
  return {
    compute: {
      ...router,
      async close() {
        await router.close();
        // Bridge networks draw on a small pool of subnets: leave none behind. One still in use stays, harmlessly.
        await docker
          .getNetwork(network)
          .remove()
          .catch((error: unknown) => logger.info('network.kept', { network, reason: describeError(error) }));
      },
    },
    workerHost: containers.gatewayIp,
  };
}
