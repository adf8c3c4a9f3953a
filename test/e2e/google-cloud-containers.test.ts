import Docker from 'dockerode';
import { dockerAnswers, testWorkerImage } from '../helpers/agent-test-image.ts';
import { googleCloudBuildSuite } from '../helpers/google-cloud-suite.ts';

// Each "VM" boots as a container of the real worker image, from exactly the metadata the adapter wrote.
const engine = new Docker();
const answers = await dockerAnswers(engine);
const gateway = answers
  ? ((await engine.getNetwork('bridge').inspect()).IPAM?.Config ?? []).map((config) => config.Gateway).find((ip) => ip?.includes('.') === true)
  : undefined;
googleCloudBuildSuite('each VM a container of the worker image on the Docker engine', {
  ...(answers && gateway !== undefined ? { docker: { engine, image: await testWorkerImage(engine), gateway } } : {}),
  skip: !answers ? 'no Docker engine answers (start dockerd, or set DOCKER_HOST)' : gateway === undefined ? "the default bridge has no IPv4 gateway" : false,
});
