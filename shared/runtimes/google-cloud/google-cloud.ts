import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Firestore } from '@google-cloud/firestore';
import type { PubSub } from '@google-cloud/pubsub';
import type { Storage } from '@google-cloud/storage';
import { createCloudLogger } from '../../adapters/gcp/cloud-logger.ts';
import { readGoogleCloudEnvironment, type GoogleCloudEnvironment } from '../../adapters/gcp/environment.ts';
import { createFirestoreDeadLetters } from '../../adapters/gcp/firestore-dead-letters.ts';
import { createFirestoreState } from '../../adapters/gcp/firestore-state.ts';
import { createGceCompute, type GceClientOptions } from '../../adapters/gcp/gce-compute.ts';
import { gceHostTypes, loadMachines } from '../../adapters/gcp/gce-host-types.ts';
import { createGcsBlobs } from '../../adapters/gcp/gcs-blobs.ts';
import { createPubsubPublisher } from '../../adapters/gcp/pubsub-publisher.ts';
import { createGitSource } from '../../adapters/local/git-source.ts';
import { wireGitHub } from '../../adapters/github/connect.ts';
import { loadConfig, type Config } from '../../core/config/config.ts';
import { ConfigError } from '../../core/errors.ts';
import { readGitHubEnvironment } from '../../core/config/github-environment.ts';
import { createDashboard } from '../../core/dashboard/dashboard.ts';
import { listHostTypes } from '../../images/host-types.ts';
import { deploymentIdOfBucket } from '../../core/model/ids.ts';
import type { Logger } from '../../ports/log.ts';
import { defaultPipelineOptions } from '../../core/pipeline/deps.ts';
import { proxyDirectories } from '../../core/pipeline/go-modules.ts';
import { createFunctions, type Functions } from './functions.ts';

/** The deployed source's root, where HERMETIC_CONFIG is looked up. */
const sourceRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** The Google clients the adapters are built over; tests hand in clients pointed at emulators and fakes. */
export interface GoogleClients {
  firestore: Firestore;
  pubsub: PubSub;
  storage: Storage;
  /** For Compute Engine's clients, which the compute adapter creates itself on first use. */
  compute?: GceClientOptions;
  /** Where signBlob is asked to sign URLs, when not Google's own (tests). */
  signingEndpoint?: string;
}

/** Creates the real Firestore and Storage clients, for the project, with the runtime's own credentials. */
async function storeClients(environment: GoogleCloudEnvironment): Promise<Pick<GoogleClients, 'firestore' | 'storage'>> {
  const [{ Firestore }, { Storage }] = await Promise.all([import('@google-cloud/firestore'), import('@google-cloud/storage')]);
  const projectId = environment.project;
  return { firestore: new Firestore({ projectId, ignoreUndefinedProperties: true }), storage: new Storage({ projectId }) };
}

/** Creates the real clients, for the project, with the runtime's own credentials. */
async function defaultClients(environment: GoogleCloudEnvironment): Promise<GoogleClients> {
  const [{ PubSub }, stores] = await Promise.all([import('@google-cloud/pubsub'), storeClients(environment)]);
  return { ...stores, pubsub: new PubSub({ projectId: environment.project }) };
}

/**
 * The builders config the environment names, inside the deployed source. A `file://` module proxy is a directory on
 * the one machine that runs `hermetic up`; no Compute Engine worker can read it, so it is refused here.
 */
async function loadCatalog(environment: GoogleCloudEnvironment): Promise<Config> {
  const config = await loadConfig(resolve(sourceRoot, environment.configFile));
  for (const builder of config.builders.values()) {
    if (builder.modules !== undefined && proxyDirectories(builder.modules.proxy).length > 0) {
      throw new ConfigError(`${config.file}: builders.${builder.name}.goProxy: ${JSON.stringify(builder.modules.proxy)} reads a directory of one machine; on Google Cloud expected http(s) proxies or "direct"`);
    }
  }
  return config;
}

/** The blobs bucket over a Storage client, signing through IAM (or the tests' endpoint). */
function bucketOf(environment: GoogleCloudEnvironment, clients: Pick<GoogleClients, 'storage' | 'signingEndpoint'>) {
  return createGcsBlobs({
    storage: clients.storage,
    bucket: environment.bucket,
    ...(clients.signingEndpoint === undefined ? {} : { signingEndpoint: clients.signingEndpoint }),
  });
}

/**
 * The Google Cloud composition root: every function over Firestore, Pub/Sub, Cloud Storage and Compute Engine, as
 * the environment configures them. Throws ConfigError at once, naming every missing or malformed variable, the
 * config file's bad field, or a machine or image of an unknown host type, so a misdeployed function says what to fix
 * on its first event. Compute Engine's client is imported only when a function first starts or lists a worker.
 */
export async function loadGoogleCloud(
  env: Readonly<Record<string, string | undefined>> = process.env,
  options: { clients?: GoogleClients; logger?: Logger } = {},
): Promise<Functions> {
  const environment = readGoogleCloudEnvironment(env);
  const githubEnvironment = readGitHubEnvironment(env);
  const logger = options.logger ?? createCloudLogger();
  const [catalog, hostTypes, machines, clients] = await Promise.all([
    loadCatalog(environment),
    listHostTypes(),
    loadMachines(),
    options.clients ?? defaultClients(environment),
  ]);
  const compute = createGceCompute({
    deployment: deploymentIdOfBucket(environment.bucket),
    project: environment.project,
    zone: environment.zone,
    hostTypes: gceHostTypes({ hostTypes, machines, images: environment.images, imageRepo: environment.imageRepo }),
    serviceAccount: environment.workerServiceAccount,
    logger,
    ...(clients.compute === undefined ? {} : { clientOptions: clients.compute }),
  });
  const state = createFirestoreState({ firestore: clients.firestore });
  // Mirrors live in the instance's /tmp (memory): a cold instance fetches again, a warm one only what is new.
  const git = createGitSource({ cacheDir: join(tmpdir(), 'hermetic-git'), logger });
  return createFunctions({
    catalog,
    state,
    publisher: createPubsubPublisher({ pubsub: clients.pubsub }),
    blobs: bucketOf(environment, clients),
    compute,
    ...wireGitHub(githubEnvironment, { git, state, logger, repos: catalog.repos }),
    logger,
    now: Date.now,
    options: { ...defaultPipelineOptions, dashboardUrl: environment.dashboardUrl },
    deadLetters: createFirestoreDeadLetters({ firestore: clients.firestore }),
    maxDeliveryAttempts: environment.maxDeliveryAttempts,
  });
}

/**
 * The dashboard alone, as App Engine serves it: over Firestore and the bucket, read-only, from the same environment
 * as the functions but without GitHub's (it shows what is stored and asks GitHub nothing), nor Pub/Sub's or Compute
 * Engine's clients. Throws ConfigError naming every missing or malformed variable, or the config file's bad field.
 */
export async function loadGoogleCloudDashboard(
  env: Readonly<Record<string, string | undefined>> = process.env,
  options: { clients?: Pick<GoogleClients, 'firestore' | 'storage' | 'signingEndpoint'>; logger?: Logger } = {},
): Promise<Functions['dashboard']> {
  const environment = readGoogleCloudEnvironment(env);
  const [catalog, clients] = await Promise.all([loadCatalog(environment), options.clients ?? storeClients(environment)]);
  return createDashboard({
    catalog,
    state: createFirestoreState({ firestore: clients.firestore }),
    blobs: bucketOf(environment, clients),
    deadLetters: createFirestoreDeadLetters({ firestore: clients.firestore }),
    logger: options.logger ?? createCloudLogger(),
    baseUrl: environment.dashboardUrl,
  });
}
