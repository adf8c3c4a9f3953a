import { describe } from 'node:test';
import Docker from 'dockerode';
import { createGceCompute } from '../../shared/adapters/gcp/gce-compute.ts';
import { instanceName, type GceHostType } from '../../shared/adapters/gcp/gce-instance.ts';
import type { OnWorkerExit } from '../../shared/ports/compute.ts';
import { bootScriptGuest, startFakeGce, type BootScriptGuestOptions } from '../fakes/gce-server.ts';
import { defaultBridgeGateway, dockerAnswers, testWorkerImage } from '../helpers/agent-test-image.ts';
import { startFakeBlobServer } from '../helpers/fake-blob-server.ts';
import { agentRequests, computeContract, type ComputeHarness } from './compute.contract.ts';

const hostType: GceHostType = {
  kind: 'cos-container',
  machineType: 'e2-standard-4',
  sourceImage: 'projects/cos-cloud/global/images/family/cos-stable',
  image: 'us-docker.pkg.dev/hermetic-test/builders/linux-amd64:test',
  spot: true,
};
const running = new Set(['PROVISIONING', 'STAGING', 'RUNNING']);
/** The deployment whose VMs these are. */
const deployment = 'contract1';

/**
 * The Compute Engine adapter, through the real client, on the fake Compute Engine API. Each VM runs its real COS
 * boot script, which fetches its spec from the VM's metadata server and runs the real agent against a fake blob
 * server: as a process through a `docker` stand-in, or in the real worker image on this machine's Docker engine.
 */
function gceCompute(docker: { image: string; gateway: string } | undefined) {
  return async (_onExit: OnWorkerExit): Promise<ComputeHarness> => {
    const blobs = await startFakeBlobServer(docker === undefined ? {} : { host: docker.gateway });
    const guestOptions: BootScriptGuestOptions = docker === undefined ? {} : { docker: 'engine' };
    const boot = await bootScriptGuest(guestOptions);
    const gce = await startFakeGce({ guest: boot.guest });
    const compute = createGceCompute({
      deployment,
      project: 'hermetic-test',
      zone: 'us-central1-a',
      hostTypes: new Map([['linux-amd64', docker === undefined ? hostType : { ...hostType, image: docker.image }]]),
      clientOptions: gce.clientOptions,
    });
    return {
      compute,
      platform: { reportsExits: false, closeStopsWorkers: false, minDeadlineMs: 30_000 },
      request: agentRequests(blobs, 'linux-amd64'),
      async leftovers(taskId) {
        const name = instanceName(deployment, taskId);
        const vm = gce.vm(name);
        return (vm !== undefined && running.has(vm.status)) || boot.running(name) ? 1 : 0;
      },
      async cleanup() {
        await compute.close();
        await gce.close();
        await boot.cleanup();
        await blobs.close();
      },
    };
  };
}

if (process.platform === 'linux') {
  computeContract('Compute Engine (fake API, boot scripts run here, docker stand-in)', gceCompute(undefined));
  const engine = new Docker();
  const answers = await dockerAnswers(engine);
  const image = answers ? await testWorkerImage(engine) : undefined;
  const gateway = image === undefined ? undefined : await defaultBridgeGateway(engine, image);
  if (image !== undefined && gateway !== undefined) {
    computeContract('Compute Engine (fake API, boot scripts run here, Docker engine)', gceCompute({ image, gateway }));
  } else {
    const why = answers ? 'the default bridge names no IPv4 gateway, and its containers get no default route' : 'no Docker engine answers (start dockerd, or set DOCKER_HOST)';
    describe('compute contract: Compute Engine with the Docker engine', { skip: why }, () => {});
  }
} else {
  describe('compute contract: Compute Engine', { skip: 'the boot-script guest needs bash and /proc (Linux)' }, () => {});
}
