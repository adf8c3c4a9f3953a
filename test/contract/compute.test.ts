import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'node:test';
import Docker from 'dockerode';
import { containerName, createDockerCompute } from '../../shared/adapters/docker/docker-compute.ts';
import { createProcessSandbox, type Isolation } from '../../shared/adapters/local/process-sandbox.ts';
import type { TaskSpec } from '../../shared/core/model/wire.ts';
import type { Compute, OnWorkerExit } from '../../shared/ports/compute.ts';
import { createFakeCompute } from '../fakes/fake-compute.ts';
import { dockerAnswers, testHostType, testWorkerImage } from '../helpers/agent-test-image.ts';
import { startFakeBlobServer } from '../helpers/fake-blob-server.ts';
import { processesOfWorker } from '../helpers/proc-scan.ts';
import { agentRequests, computeContract, type ComputeHarness, type WorkerBehaviour } from './compute.contract.ts';

/** The process sandbox running the real agent, which talks to a fake blob server. */
function processSandbox(isolation: Isolation) {
  return async (onExit: OnWorkerExit): Promise<ComputeHarness> => {
    const server = await startFakeBlobServer();
    const workRoot = await mkdtemp(join(tmpdir(), 'hermetic-compute-contract-'));
    const compute = await createProcessSandbox({ workRoot, onExit, isolation });
    return {
      compute,
      request: agentRequests(server, 'host'),
      leftovers: async (taskId) => processesOfWorker(join(workRoot, taskId)).length,
      async cleanup() {
        await compute.close();
        await server.close();
        await rm(workRoot, { recursive: true, force: true });
      },
    };
  };
}

/** The Docker compute on a fresh internal network, running the real agent in a real worker image. */
function dockerCompute(docker: Docker, image: string) {
  return async (onExit: OnWorkerExit): Promise<ComputeHarness> => {
    const deployment = randomBytes(4).toString('hex');
    const network = `hermetic-test-${deployment}`;
    const compute = await createDockerCompute({ docker, images: new Map([[testHostType, image]]), deployment, network, onExit });
    // Workers reach the host only at their network's gateway, so the blob server listens there.
    const server = await startFakeBlobServer({ host: compute.gatewayIp });
    return {
      compute,
      request: agentRequests(server, testHostType),
      async leftovers(taskId) {
        const name = containerName(deployment, taskId);
        const found = await docker.listContainers({ all: true, filters: { name: [name] } });
        return found.filter((info) => info.Names.includes(`/${name}`)).length;
      },
      async cleanup() {
        await compute.close();
        await server.close();
        await docker.getNetwork(network).remove();
      },
    };
  };
}

/** The fake, with workers that end by themselves as their behaviour says. */
async function fakeCompute(onExit: OnWorkerExit): Promise<ComputeHarness> {
  const fake = createFakeCompute({ onExit, enforceDeadlines: true });
  const behaviours = new Map<string, WorkerBehaviour>();
  const compute: Compute = {
    hostTypes: fake.hostTypes,
    async start(request) {
      const before = fake.started.length;
      await fake.start(request);
      if (fake.started.length === before) return;
      const behaviour = behaviours.get(request.taskId);
      if (behaviour === 'hang') return;
      setTimeout(() => fake.finish(request.taskId, { code: behaviour === 'succeed' ? 0 : 1 }), 10);
    },
    stop: (taskId) => fake.stop(taskId),
    list: () => fake.list(),
    close: () => fake.close(),
  };
  return {
    compute,
    request(taskId, behaviour, options = {}) {
      behaviours.set(taskId, behaviour);
      return {
        taskId,
        hostType: 'host',
        spec: placeholderSpec(taskId),
        deadline: options.deadline ?? Date.now() + 120_000,
        labels: options.labels ?? {},
      };
    },
    leftovers: async (taskId) => ((await fake.list()).some((worker) => worker.taskId === taskId) ? 1 : 0),
    cleanup: () => fake.close(),
  };
}

function placeholderSpec(taskId: string): TaskSpec {
  const url = 'http://blobs.test/x';
  return {
    v: 1,
    taskId,
    builder: 'test',
    attempt: 1,
    steps: [{ name: 'noop', argv: ['true'] }],
    env: {},
    deadline: Date.now() + 600_000,
    source: { url },
    unpack: { maxBytes: 1 << 30, maxEntries: 100_000 },
    log: { chunkUrls: [url], chunkBytes: 1024 },
    result: { url },
  };
}

computeContract('fake compute', fakeCompute);
computeContract('process sandbox (process-group)', processSandbox('process-group'));
if (await pidNamespacesWork()) computeContract('process sandbox (pid-namespace)', processSandbox('pid-namespace'));
const docker = new Docker();
if (await dockerAnswers(docker)) {
  computeContract('Docker compute', dockerCompute(docker, await testWorkerImage(docker)));
} else {
  describe('compute contract: Docker compute', { skip: 'no Docker engine answers (start dockerd, or set DOCKER_HOST)' }, () => {});
}

async function pidNamespacesWork(): Promise<boolean> {
  const workRoot = await mkdtemp(join(tmpdir(), 'hermetic-probe-'));
  try {
    const sandbox = await createProcessSandbox({ workRoot, onExit: () => {}, isolation: 'auto' });
    await sandbox.close();
    return sandbox.isolation === 'pid-namespace';
  } finally {
    await rm(workRoot, { recursive: true, force: true });
  }
}
