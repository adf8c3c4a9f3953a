import { describe } from 'node:test';
import { createGceCompute } from '../../shared/adapters/gcp/gce-compute.ts';
import { instanceName, type GceHostType } from '../../shared/adapters/gcp/gce-instance.ts';
import { blobKeys } from '../../shared/model/wire.ts';
import type { OnWorkerExit } from '../../shared/ports/compute.ts';
import { bootScriptGuest, startFakeGce } from '../fakes/gce-server.ts';
import { startFakeBlobServer, taskSpecFor } from '../helpers/fake-blob-server.ts';
import { computeContract, type ComputeHarness } from './compute.contract.ts';

const hostType: GceHostType = {
  kind: 'cos-container',
  machineType: 'e2-standard-4',
  sourceImage: 'projects/cos-cloud/global/images/family/cos-stable',
  image: 'us-docker.pkg.dev/hermetic-test/builders/linux-amd64:test',
  spot: true,
};
const running = new Set(['PROVISIONING', 'STAGING', 'RUNNING']);

/**
 * The Compute Engine adapter, through the real client, on the fake Compute Engine API. Each VM runs its real COS
 * boot script, which fetches its spec from the VM's metadata server and runs the real agent against a fake blob
 * server; `docker` there is a stand-in that runs the agent as a process.
 */
async function gceCompute(_onExit: OnWorkerExit): Promise<ComputeHarness> {
  const blobs = await startFakeBlobServer();
  const boot = await bootScriptGuest();
  const gce = await startFakeGce({ guest: boot.guest });
  const compute = createGceCompute({
    project: 'hermetic-test',
    zone: 'us-central1-a',
    hostTypes: new Map([['linux-amd64', hostType]]),
    clientOptions: gce.clientOptions,
  });
  return {
    compute,
    platform: { reportsExits: false, closeStopsWorkers: false, minDeadlineMs: 30_000 },
    request(taskId, behaviour, options = {}) {
      const steps = behaviour === 'hang' ? [['sleep', '300']] : [['true']];
      // A refused result upload makes the agent exit 1.
      if (behaviour === 'fail') blobs.failPuts(blobKeys.result(taskId), 403, Number.POSITIVE_INFINITY);
      return {
        taskId,
        hostType: 'linux-amd64',
        spec: taskSpecFor(blobs, taskId, { steps }),
        deadline: options.deadline ?? Date.now() + 120_000,
        labels: options.labels ?? {},
      };
    },
    async leftovers(taskId) {
      const name = instanceName(taskId);
      const vm = gce.vm(name);
      return (vm !== undefined && running.has(vm.status)) || boot.processes(name).length > 0 ? 1 : 0;
    },
    async cleanup() {
      await compute.close();
      await gce.close();
      await boot.cleanup();
      await blobs.close();
    },
  };
}

if (process.platform === 'linux') {
  computeContract('Compute Engine (fake API, boot scripts run here)', gceCompute);
} else {
  describe('compute contract: Compute Engine', { skip: 'the boot-script guest needs bash and /proc (Linux)' }, () => {});
}
