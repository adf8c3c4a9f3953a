import Docker from 'dockerode';
import { defaultBridgeGateway, dockerAnswers, testWorkerImage } from '../helpers/agent-test-image.ts';
import { googleCloudBuildSuite } from '../helpers/google-cloud-suite.ts';

// Each "VM" boots as a container of the real worker image, from exactly the metadata the adapter wrote.
const engine = new Docker();
const answers = await dockerAnswers(engine);
const image = answers ? await testWorkerImage(engine) : undefined;
const gateway = image === undefined ? undefined : await defaultBridgeGateway(engine, image);
googleCloudBuildSuite('each VM a container of the worker image on the Docker engine', {
  ...(image !== undefined && gateway !== undefined ? { docker: { engine, image, gateway } } : {}),
  skip: !answers ? 'no Docker engine answers (start dockerd, or set DOCKER_HOST)' : gateway === undefined ? 'the default bridge names no IPv4 gateway, and its containers get no default route' : false,
});
