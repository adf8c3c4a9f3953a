import { triggers, type MessageFunctionName } from './functions.ts';
import { deploymentIdOfBucket } from '../../core/model/ids.ts';
import { topics } from '../../core/model/messages.ts';
import { labelKeys } from '../../adapters/gcp/gce-instance.ts';
import { collections } from '../../ports/state.ts';
import { dashboardSize, functionSizes } from './function-sizes.ts';

/**
 * The gcloud commands that deploy hermetic to one Google Cloud project, and the ones that remove it again. Pure: it
 * builds argument vectors and touches nothing, so a dry run, the tests and the real run all see the same plan.
 *
 * Some names are only known once an earlier command has run (the project number, in the service agents' emails;
 * the subscription Eventarc made for a function). Such a command `sets` a variable from its stdout, and later
 * arguments refer to it as `${NAME}`; `${NAME%%/*}` is its part before the first `/`. These are shell's own
 * forms, so a dry run reads as a script.
 */

/** One step: an argument vector (no shell), why it is there, and what it leaves for the steps after it. */
export interface Command {
  argv: string[];
  why: string;
  /**
   * A failure that counts as done, so a second run goes through: `exists`, a create that finds its resource there;
   * `missing`, a delete (or a look-up during teardown) that finds it gone.
   */
  done?: 'exists' | 'missing';
  /** Its stdout, trimmed, is bound to this variable for later commands (`${NAME}` in their arguments). */
  sets?: string;
  /** A file this command reads, written (with variables filled in) just before it runs. */
  writes?: { path: string; text: string };
}

/** What triggers a deployed function. */
export type Trigger = { kind: 'pubsub'; topic: string } | { kind: 'http'; runsOn: 'app-engine' };

/** The topic every subscription's undeliverable messages go to; the `deadLetter` function records them. */
export const deadLetterTopic = topics.deadLetters;

/**
 * The bucket notification that wakes `landed`: Cloud Storage publishes to this topic when an object under this
 * prefix (see blobKeys.result) is written, and to no other, so log chunks wake nothing.
 */
export const resultNotification = { topic: topics.resultLanded, prefix: 'results/', event: 'OBJECT_FINALIZE' } as const;

type MessageTriggers = { [K in MessageFunctionName]: { kind: 'pubsub'; topic: (typeof triggers)[K] } };

function messageTriggers(): MessageTriggers {
  const entries = (Object.keys(triggers) as MessageFunctionName[]).map((name) => [name, { kind: 'pubsub', topic: triggers[name] }]);
  return Object.fromEntries(entries) as MessageTriggers;
}

/**
 * Every function that is deployed, by entry point, and what triggers it: each message function of `triggers` (landed
 * and the dead-letter recorder among them) on its topic, and the dashboard, over HTTP on App Engine. The one table
 * the plan, its tests and its teardown read; the `webhook` function, deployed with `--github` only, is planned apart.
 */
export const deployedFunctions = {
  ...messageTriggers(),
  dashboard: { kind: 'http', runsOn: 'app-engine' },
} as const satisfies Record<string, Trigger>;
export type DeployedFunctionName = keyof typeof deployedFunctions;

/**
 * Cloud Functions (2nd gen) are Cloud Run services, whose names are lower case: `deadLetter` is deployed as
 * `dead-letter`, with `deadLetter` as its entry point.
 */
export function serviceNameOf(entryPoint: string): string {
  return entryPoint.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/** What the bucket keeps, by key prefix (see blobKeys), and for how many days. The file the deploy applies. */
export const lifecycleFile = 'infra/deploy/lifecycle.json';
export const lifecycleDays = { 'source/': 7, 'tasks/': 30, 'results/': 30, 'builds/': 30, 'snapshots/': 14, 'modules/': 30 } as const;

/** The lifecycle configuration `gcloud storage buckets update --lifecycle-file` takes: delete by age and prefix. */
export function lifecycleConfig(days: Readonly<Record<string, number>> = lifecycleDays) {
  return {
    rule: Object.entries(days).map(([prefix, age]) => ({ action: { type: 'Delete' }, condition: { age, matchesPrefix: [prefix] } })),
  };
}

/** The APIs the deploy uses. */
export const services = [
  'cloudfunctions',
  'run',
  'eventarc',
  'pubsub',
  'firestore',
  'storage',
  'compute',
  'cloudscheduler',
  'artifactregistry',
  'cloudbuild',
  'appengine',
  'iamcredentials',
  // Service accounts and their grants, and the project's own IAM policy: off by default in a new project.
  'iam',
  'cloudresourcemanager',
].map((name) => `${name}.googleapis.com`);

/** Every role granted, by whom it is granted to and on what. The worker's account gets none. */
export const grants = {
  /**
   * Cloud Build builds the functions and the dashboard as this account: a new organisation's default build account
   * (Compute Engine's) often has no role at all. App Engine builds a version as the account the version runs as, and
   * `gcloud app deploy` takes no separate build account, so the dashboard also runs as this one, reading Firestore
   * and the bucket.
   */
  build: {
    project: ['roles/cloudbuild.builds.builder', 'roles/datastore.viewer'],
    bucket: ['roles/storage.objectViewer'],
  },
  functions: {
    project: ['roles/datastore.user', 'roles/pubsub.publisher', 'roles/compute.instanceAdmin.v1'],
    bucket: ['roles/storage.objectAdmin'],
    workerAccount: ['roles/iam.serviceAccountUser'],
    /** On itself: it signs the workers' URLs through the IAM signBlob API. */
    ownAccount: ['roles/iam.serviceAccountTokenCreator'],
    /** On each GitHub secret only. */
    secret: ['roles/secretmanager.secretAccessor'],
  },
  /** The identity Eventarc pushes events as: it may invoke the functions, and receive events, and nothing else. */
  events: { project: ['roles/eventarc.eventReceiver'], function: ['roles/run.invoker'] },
  worker: {},
  /**
   * Worker VMs have no service account (untrusted code holds no credentials), so Container-Optimized OS pulls the
   * builder images anonymously: the one image repository is readable by anyone. The images hold Debian packages, a
   * Go toolchain and the agent: nothing secret.
   */
  anyone: { imageRepo: ['roles/artifactregistry.reader'] },
  pubsubAgent: {
    deadLetterTopic: ['roles/pubsub.publisher'],
    subscription: ['roles/pubsub.subscriber'],
    /**
     * On the event-delivery account only: Pub/Sub mints the token of each authenticated push as that account. Projects
     * made before 2021-04-09 do not grant this to the agent themselves.
     */
    eventsAccount: ['roles/iam.serviceAccountTokenCreator'],
  },
  /** On the result-landed topic only: the bucket notification publishes there. */
  storageAgent: { resultTopic: ['roles/pubsub.publisher'] },
} as const;

/** Where and how to deploy. Names derived from the project unless given. */
export interface PlanOptions {
  project: string;
  region: string;
  zone: string;
  /** The builder images, as `hermetic images build` tagged them locally (`hermetic/<host type>:<hash>`). */
  images?: ReadonlyArray<{ hostType: string; tag: string }>;
  /** Default: `<project>-hermetic`. */
  bucket?: string;
  /** The Artifact Registry repository. Default: `hermetic`. */
  imageRepo?: string;
  /** The builders config inside the deployed source. Default: hermetic.config.json. */
  config?: string;
  /** Deliveries of a message before it goes to the dead-letter topic (Pub/Sub allows 5 to 100). Default: 5. */
  maxDeliveryAttempts?: number;
  /** App Engine's name for the region, where it differs (us-central1 is `us-central`). */
  appRegion?: string;
  /** Cron schedules of the poll and reap ticks. */
  schedules?: { poll?: string; reap?: string };
  /** GitHub access for trybots and statuses: a token or a GitHub App, its secrets in Secret Manager. */
  github?: GitHubDeploy;
}

/** How the functions reach GitHub. The secrets' values are added by the operator (see the README), never by deploy. */
export interface GitHubDeploy {
  auth: 'token' | 'app';
  /** The GitHub App's ID, for `app`. */
  appId?: string;
  /** GitHub Enterprise's API URL; default github.com's. */
  apiUrl?: string;
}

/** The Secret Manager secrets GitHub access needs, by the variable each is set as. */
export function githubSecrets(github: GitHubDeploy): Record<string, string> {
  return {
    HERMETIC_WEBHOOK_SECRET: 'hermetic-webhook-secret',
    ...(github.auth === 'token' ? { GITHUB_TOKEN: 'hermetic-github-token' } : { GITHUB_APP_PRIVATE_KEY: 'hermetic-github-app-key' }),
  };
}

/** Every name the plan uses, resolved from the options. */
export interface PlanNames {
  project: string;
  region: string;
  zone: string;
  bucket: string;
  imageRepo: string;
  config: string;
  maxDeliveryAttempts: number;
  appRegion: string;
  functionsAccount: string;
  eventsAccount: string;
  workerAccount: string;
  buildAccount: string;
  schedules: { poll: string; reap: string };
  /** The pushed builder images as the functions find them: `name:tag` under the image repository, space-separated. */
  images: string;
  github: GitHubDeploy | undefined;
}

/**
 * The composite indexes the dashboard's queries need: an equality on one field, newest first by `seq` (or, for
 * trybot requests, by `createdAt`; Firestore merges these for queries on several of the fields). Equality-only
 * queries need none.
 */
export const firestoreIndexes = [
  { collection: collections.commits.name, field: 'repo', orderBy: 'seq' },
  { collection: collections.builds.name, field: 'repo', orderBy: 'seq' },
  { collection: collections.builds.name, field: 'commit', orderBy: 'seq' },
  { collection: collections.builds.name, field: 'status', orderBy: 'seq' },
  { collection: collections.trybots.name, field: 'repo', orderBy: 'createdAt' },
] as const;

/** Service account IDs (the part before `@`). */
export const accountIds = { functions: 'hermetic-functions', events: 'hermetic-events', worker: 'hermetic-worker', build: 'hermetic-build' } as const;

/**
 * The label every worker VM carries (with the task ID as its value). Teardown deletes the VMs that have it and name
 * this deployment (its ID from the bucket), so another deployment's workers in the same project are left running.
 */
export const workerLabel = labelKeys.task;

/** The filter that lists this deployment's worker VMs. */
export function workerFilter(bucket: string): string {
  return `labels.${workerLabel}:* AND labels.${labelKeys.deployment}=${deploymentIdOfBucket(bucket)}`;
}

/** Where `gcloud app deploy` finds the dashboard's app.yaml, written by the deploy itself. */
export const appYamlFile = '.hermetic/deploy/app.yaml';

/** Names from options and defaults. */
export function planNames(options: PlanOptions): PlanNames {
  const { project, region, zone } = options;
  const account = (id: string) => `${id}@${project}.iam.gserviceaccount.com`;
  return {
    project,
    region,
    zone,
    bucket: options.bucket ?? `${project}-hermetic`,
    imageRepo: options.imageRepo ?? 'hermetic',
    config: options.config ?? 'hermetic.config.json',
    maxDeliveryAttempts: options.maxDeliveryAttempts ?? 5,
    appRegion: options.appRegion ?? appEngineRegionOf(region),
    functionsAccount: account(accountIds.functions),
    eventsAccount: account(accountIds.events),
    workerAccount: account(accountIds.worker),
    buildAccount: account(accountIds.build),
    schedules: { poll: options.schedules?.poll ?? '* * * * *', reap: options.schedules?.reap ?? '*/2 * * * *' },
    images: (options.images ?? []).map(repositoryTagOf).join(' '),
    github: options.github,
  };
}

/** An image's name and tag in the image repository: its local tag without the `hermetic/` prefix. */
function repositoryTagOf(image: { tag: string }): string {
  return image.tag.replace(/^hermetic\//, '');
}

/** App Engine names two regions differently from everything else; the rest share their name. */
export function appEngineRegionOf(region: string): string {
  return ({ 'us-central1': 'us-central', 'europe-west1': 'europe-west' } as Record<string, string>)[region] ?? region;
}

/** Topics that a function listens on, in table order, then the dead-letter topic. */
export function topicsToCreate(): string[] {
  const topics = Object.values(deployedFunctions).flatMap((trigger) => (trigger.kind === 'pubsub' ? [trigger.topic] : []));
  return [...new Set(topics.filter((topic) => topic !== deadLetterTopic)), deadLetterTopic];
}

/** The variables the composition root reads, as each function and the dashboard get them; GitHub's are apart. */
export function environmentOf(names: PlanNames): Record<string, string> {
  return {
    HERMETIC_PROJECT: names.project,
    HERMETIC_REGION: names.region,
    HERMETIC_ZONE: names.zone,
    HERMETIC_BUCKET: names.bucket,
    HERMETIC_DASHBOARD_URL: 'https://${DASHBOARD_HOST}',
    HERMETIC_IMAGE_REPO: '${IMAGE_REPO}',
    HERMETIC_WORKER_SA: names.workerAccount,
    HERMETIC_CONFIG: names.config,
    HERMETIC_MAX_DELIVERY_ATTEMPTS: String(names.maxDeliveryAttempts),
    HERMETIC_IMAGES: names.images,
  };
}

/**
 * How the functions reach GitHub, beside their secrets (see secretFlags); none without GitHub. Only the functions get
 * these: the dashboard asks GitHub nothing, and App Engine holds no secret.
 */
export function githubEnvironmentOf(names: PlanNames): Record<string, string> {
  if (names.github === undefined) return {};
  return {
    HERMETIC_GITHUB_AUTH: names.github.auth,
    ...(names.github.appId === undefined ? {} : { HERMETIC_GITHUB_APP_ID: names.github.appId }),
    ...(names.github.apiUrl === undefined ? {} : { HERMETIC_GITHUB_API_URL: names.github.apiUrl }),
  };
}

/** `--set-secrets` for a function: each GitHub secret's latest version as its variable; none without GitHub. */
function secretFlags(names: PlanNames): string[] {
  if (names.github === undefined) return [];
  return [`--set-secrets=${Object.entries(githubSecrets(names.github)).map(([variable, secret]) => `${variable}=${secret}:latest`).join(',')}`];
}

/**
 * The dashboard's App Engine config: Node 22, scaled to zero when idle, the functions' variables but not GitHub's. It
 * runs functions-framework's own server on the `dashboard` function, as Cloud Functions would: the same entry point
 * (the package's `main`), the same registration, which builds the dashboard without GitHub access.
 */
export function appYaml(names: PlanNames): string {
  const env = Object.entries(environmentOf(names)).map(([key, value]) => `  ${key}: ${JSON.stringify(value)}`);
  return [
    '# Written by `hermetic deploy`; edits are overwritten.',
    'runtime: nodejs22',
    'entrypoint: node node_modules/@google-cloud/functions-framework/build/src/main.js --target=dashboard --signature-type=http',
    `instance_class: ${dashboardSize.instanceClass}`,
    'automatic_scaling:',
    '  min_instances: 0',
    '  max_instances: 2',
    'env_variables:',
    ...env,
    '',
  ].join('\n');
}

/** Variable names of one function's Eventarc trigger and subscription. */
function variablesOf(name: DeployedFunctionName): { trigger: string; subscription: string } {
  const upper = serviceNameOf(name).toUpperCase().replace(/-/g, '_');
  return { trigger: `TRIGGER_${upper}`, subscription: `SUB_${upper}` };
}

/** Functions deployed on Cloud Functions (not the dashboard), in table order, with their topics. */
function cloudFunctions(): Array<[MessageFunctionName, string]> {
  return (Object.entries(deployedFunctions) as Array<[DeployedFunctionName, Trigger]>).flatMap(([name, trigger]) =>
    trigger.kind === 'pubsub' && name !== 'dashboard' ? [[name, trigger.topic] as [MessageFunctionName, string]] : [],
  );
}

const serviceAccountMember = (email: string) => `serviceAccount:${email}`;

/** The `--member` flags that name the functions', the event-delivery and the build accounts in grants. */
function memberFlags(names: PlanNames) {
  return {
    functionsMember: `--member=${serviceAccountMember(names.functionsAccount)}`,
    eventsMember: `--member=${serviceAccountMember(names.eventsAccount)}`,
    buildMember: `--member=${serviceAccountMember(names.buildAccount)}`,
  };
}

/** A function's `--memory` and `--cpu`, from the sizes table. */
function sizeFlags(name: keyof typeof functionSizes): string[] {
  const size = functionSizes[name];
  return [`--memory=${size.memoryMiB}Mi`, `--cpu=${size.cpu}`];
}

/**
 * A topic as its full resource name. Commands that take a topic of another service (a scheduler job's, a bucket
 * notification's) resolve a bare name against the default project, not `--project`: with none set they fail, with
 * another one they point there.
 */
function topicPath(project: string, topic: string): string {
  return `projects/${project}/topics/${topic}`;
}
const pubsubAgent = serviceAccountMember('service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com');
const storageAgent = 'serviceAccount:${STORAGE_AGENT}';

/** Collects commands; `create` and `remove` mark the failures that mean "done already". */
function collector() {
  const commands: Command[] = [];
  const add = (why: string, argv: string[], extra: Omit<Command, 'argv' | 'why'> = {}) => void commands.push({ argv, why, ...extra });
  return {
    commands,
    add,
    create: (why: string, argv: string[], extra: Omit<Command, 'argv' | 'why' | 'done'> = {}) => add(why, argv, { ...extra, done: 'exists' }),
    remove: (why: string, argv: string[], extra: Omit<Command, 'argv' | 'why' | 'done'> = {}) => add(why, argv, { ...extra, done: 'missing' }),
  };
}

/**
 * Every command that deploys hermetic, in order: APIs, the database, the bucket, topics, service accounts and their
 * grants, the image repository and images, the App Engine application, the functions with a dead-letter policy on
 * each one's subscription, the bucket notification that wakes `landed`, the scheduler ticks, and the dashboard. Each
 * step is safe to run again: a create that finds its resource there counts as done.
 */
export function deployPlan(options: PlanOptions): Command[] {
  const names = planNames(options);
  const { project, region, bucket } = names;
  const p = ['--project', project];
  const { commands, add, create, remove } = collector();
  const { functionsMember, eventsMember, buildMember } = memberFlags(names);

  add('enable the APIs hermetic uses', ['gcloud', 'services', 'enable', ...services, ...(names.github === undefined ? [] : ['secretmanager.googleapis.com']), ...p]);
  add('look up the project number, which names the Pub/Sub service agent', ['gcloud', 'projects', 'describe', project, '--format=value(projectNumber)'], {
    sets: 'PROJECT_NUMBER',
  });
  // Enabling an API does not make its service agent at once; granting a role to one that is not there yet fails.
  add('make sure the Pub/Sub service agent exists before it is granted anything (a beta command)', [
    'gcloud', 'beta', 'services', 'identity', 'create', '--service=pubsub.googleapis.com', ...p,
  ]);
  add('look up the Cloud Storage service agent, which publishes the bucket\'s notifications', ['gcloud', 'storage', 'service-agent', ...p], { sets: 'STORAGE_AGENT' });

  create('the state store: a Firestore database in native mode', [
    'gcloud', 'firestore', 'databases', 'create', `--location=${region}`, '--type=firestore-native', ...p,
  ]);

  for (const index of firestoreIndexes) {
    create(`the index for ${index.collection} by ${index.field}, newest first`, [
      'gcloud', 'firestore', 'indexes', 'composite', 'create', `--collection-group=${index.collection}`,
      `--field-config=field-path=${index.field},order=ascending`, `--field-config=field-path=${index.orderBy},order=descending`, ...p,
    ]);
  }
  for (const collection of Object.values(collections)) {
    add(`${collection.name}: the document's JSON text is never queried, so it is not indexed`, [
      'gcloud', 'firestore', 'indexes', 'fields', 'update', 'json', `--collection-group=${collection.name}`, '--disable-indexes', ...p,
    ]);
  }

  create('the blobs bucket: sources, logs, results, snapshots', [
    'gcloud', 'storage', 'buckets', 'create', `gs://${bucket}`, `--location=${region}`, '--uniform-bucket-level-access', '--public-access-prevention', ...p,
  ]);
  add(`expire blobs by age (${Object.entries(lifecycleDays).map(([prefix, days]) => `${prefix} ${days} days`).join(', ')})`, [
    'gcloud', 'storage', 'buckets', 'update', `gs://${bucket}`, `--lifecycle-file=${lifecycleFile}`, ...p,
  ]);

  for (const topic of topicsToCreate()) {
    create(topic === deadLetterTopic ? 'the topic undeliverable messages go to' : `the topic ${topic}`, ['gcloud', 'pubsub', 'topics', 'create', topic, ...p]);
  }
  for (const role of grants.pubsubAgent.deadLetterTopic) {
    add('Pub/Sub moves undeliverable messages to the dead-letter topic as its service agent', [
      'gcloud', 'pubsub', 'topics', 'add-iam-policy-binding', deadLetterTopic, `--member=${pubsubAgent}`, `--role=${role}`, ...p,
    ]);
  }
  for (const role of grants.storageAgent.resultTopic) {
    add(`Cloud Storage publishes the result notifications to ${resultNotification.topic}, and to no other topic`, [
      'gcloud', 'pubsub', 'topics', 'add-iam-policy-binding', resultNotification.topic, `--member=${storageAgent}`, `--role=${role}`, ...p,
    ]);
  }

  create('the functions run as this account', ['gcloud', 'iam', 'service-accounts', 'create', accountIds.functions, '--display-name=hermetic functions', ...p]);
  create('Eventarc delivers events as this account', ['gcloud', 'iam', 'service-accounts', 'create', accountIds.events, '--display-name=hermetic event delivery', ...p]);
  create('worker VMs run as this account, which has no roles: untrusted code holds no credentials', [
    'gcloud', 'iam', 'service-accounts', 'create', accountIds.worker, '--display-name=hermetic workers (no roles)', ...p,
  ]);
  create('Cloud Build builds the functions and the dashboard as this account, which also runs the dashboard', [
    'gcloud', 'iam', 'service-accounts', 'create', accountIds.build, '--display-name=hermetic builds and dashboard', ...p,
  ]);
  for (const role of grants.functions.project) {
    add(`functions: ${role}`, ['gcloud', 'projects', 'add-iam-policy-binding', project, functionsMember, `--role=${role}`, '--condition=None']);
  }
  for (const role of grants.functions.bucket) {
    add(`functions: ${role} on the blobs bucket only`, ['gcloud', 'storage', 'buckets', 'add-iam-policy-binding', `gs://${bucket}`, functionsMember, `--role=${role}`, ...p]);
  }
  for (const role of grants.functions.workerAccount) {
    add('functions: may start VMs that run as the worker account, and no other', [
      'gcloud', 'iam', 'service-accounts', 'add-iam-policy-binding', names.workerAccount, functionsMember, `--role=${role}`, ...p,
    ]);
  }
  for (const role of grants.functions.ownAccount) {
    add('functions: may sign blobs as themselves, for the workers\' signed URLs', [
      'gcloud', 'iam', 'service-accounts', 'add-iam-policy-binding', names.functionsAccount, functionsMember, `--role=${role}`, ...p,
    ]);
  }
  for (const role of grants.events.project) {
    add(`event delivery: ${role}`, ['gcloud', 'projects', 'add-iam-policy-binding', project, eventsMember, `--role=${role}`, '--condition=None']);
  }
  for (const role of grants.pubsubAgent.eventsAccount) {
    add('Pub/Sub signs each push to a function as the event-delivery account', [
      'gcloud', 'iam', 'service-accounts', 'add-iam-policy-binding', names.eventsAccount, `--member=${pubsubAgent}`, `--role=${role}`, ...p,
    ]);
  }
  for (const role of grants.build.project) {
    add(`builds and the dashboard: ${role}`, ['gcloud', 'projects', 'add-iam-policy-binding', project, buildMember, `--role=${role}`, '--condition=None']);
  }
  for (const role of grants.build.bucket) {
    add(`the dashboard: ${role} on the blobs bucket, for logs`, [
      'gcloud', 'storage', 'buckets', 'add-iam-policy-binding', `gs://${bucket}`, buildMember, `--role=${role}`, ...p,
    ]);
  }

  create('the repository of builder images', ['gcloud', 'artifacts', 'repositories', 'create', names.imageRepo, '--repository-format=docker', `--location=${region}`, ...p]);
  for (const role of grants.anyone.imageRepo) {
    add('workers pull the builder images without credentials', [
      'gcloud', 'artifacts', 'repositories', 'add-iam-policy-binding', names.imageRepo, `--location=${region}`, '--member=allUsers', `--role=${role}`, ...p,
    ]);
  }
  add('look up the repository\'s address', [
    'gcloud', 'artifacts', 'repositories', 'describe', names.imageRepo, `--location=${region}`, '--format=value(registryUri)', ...p,
  ], { sets: 'IMAGE_REPO' });
  if ((options.images ?? []).length > 0) {
    add('let docker push there with your gcloud credentials', ['gcloud', 'auth', 'configure-docker', '${IMAGE_REPO%%/*}', '--quiet']);
  }
  for (const image of options.images ?? []) {
    const remote = `\${IMAGE_REPO}/${repositoryTagOf(image)}`;
    add(`the ${image.hostType} builder image, under the tag its recipe hashes to`, ['docker', 'tag', image.tag, remote]);
    add(`upload the ${image.hostType} image`, ['docker', 'push', remote]);
  }

  create('the App Engine application that serves the dashboard (its region cannot change later)', ['gcloud', 'app', 'create', `--region=${names.appRegion}`, ...p]);
  add('look up the dashboard\'s address, for links in reports', ['gcloud', 'app', 'describe', '--format=value(defaultHostname)', ...p], { sets: 'DASHBOARD_HOST' });

  for (const [variable, secret] of Object.entries(names.github === undefined ? {} : githubSecrets(names.github))) {
    create(`the secret ${secret}, which the functions read as ${variable}`, ['gcloud', 'secrets', 'create', secret, '--replication-policy=automatic', ...p]);
    add(`${secret} holds a value (add it with: gcloud secrets versions add ${secret} --data-file=FILE)`, [
      'gcloud', 'secrets', 'versions', 'describe', 'latest', `--secret=${secret}`, '--format=value(name)', ...p,
    ]);
    for (const role of grants.functions.secret) {
      add(`the functions may read ${secret}, and no other secret`, ['gcloud', 'secrets', 'add-iam-policy-binding', secret, functionsMember, `--role=${role}`, ...p]);
    }
  }

  const env = Object.entries({ ...environmentOf(names), ...githubEnvironmentOf(names) }).map(([key, value]) => `${key}=${value}`).join(',');
  const secrets = secretFlags(names);
  // What every function deploy shares: source, runtime, identity, the account its build runs as, and the variables.
  const functionFlags = [
    '--gen2', '--runtime=nodejs22', `--region=${region}`, '--source=.', `--service-account=${names.functionsAccount}`,
    `--build-service-account=projects/${project}/serviceAccounts/${names.buildAccount}`, `--set-env-vars=${env}`, ...secrets,
  ];
  for (const [name, topic] of cloudFunctions()) {
    const service = serviceNameOf(name);
    add(`the ${name} function, on topic ${topic}`, [
      'gcloud', 'functions', 'deploy', service, ...functionFlags, `--entry-point=${name}`, ...sizeFlags(name), `--trigger-topic=${topic}`, '--retry',
      `--trigger-service-account=${names.eventsAccount}`, '--ingress-settings=internal-only', '--no-allow-unauthenticated', '--timeout=300s', ...p,
    ]);
    // add-invoker-policy-binding takes no role: it grants grants.events.function, run.invoker.
    add(`event delivery may invoke ${service} (${grants.events.function.join(', ')}), and only the functions`, [
      'gcloud', 'functions', 'add-invoker-policy-binding', service, `--region=${region}`, eventsMember, ...p,
    ]);
    // The dead-letter recorder is the end of the line: its own failures are retried, never dead-lettered.
    if (topic === deadLetterTopic) continue;
    const vars = variablesOf(name);
    add(`find the Eventarc trigger gcloud made for ${service}`, [
      'gcloud', 'functions', 'describe', service, '--gen2', `--region=${region}`, '--format=value(eventTrigger.trigger.basename())', ...p,
    ], { sets: vars.trigger });
    add('find the Pub/Sub subscription behind it, which Eventarc named', [
      'gcloud', 'eventarc', 'triggers', 'describe', `\${${vars.trigger}}`, `--location=${region}`, '--format=value(transport.pubsub.subscription.basename())', ...p,
    ], { sets: vars.subscription });
    add(`after ${names.maxDeliveryAttempts} deliveries, ${service}'s messages go to the dead-letter topic`, [
      'gcloud', 'pubsub', 'subscriptions', 'update', `\${${vars.subscription}}`, `--dead-letter-topic=${deadLetterTopic}`,
      `--max-delivery-attempts=${names.maxDeliveryAttempts}`, ...p,
    ]);
    for (const role of grants.pubsubAgent.subscription) {
      add('Pub/Sub acknowledges a message it dead-letters as its service agent', [
        'gcloud', 'pubsub', 'subscriptions', 'add-iam-policy-binding', `\${${vars.subscription}}`, `--member=${pubsubAgent}`, `--role=${role}`, ...p,
      ]);
    }
  }

  if (names.github !== undefined) {
    add('the webhook function: public, since GitHub calls it and signs every delivery, which it checks', [
      'gcloud', 'functions', 'deploy', serviceNameOf('webhook'), ...functionFlags, '--entry-point=webhook', ...sizeFlags('webhook'),
      '--trigger-http', '--allow-unauthenticated', '--ingress-settings=all', '--timeout=60s', ...p,
    ]);
    add("the webhook's address, for the repository's webhook settings", [
      'gcloud', 'functions', 'describe', serviceNameOf('webhook'), '--gen2', `--region=${region}`, '--format=value(serviceConfig.uri)', ...p,
    ], { sets: 'WEBHOOK_URL' });
  }

  // A second `notifications create` would add a second notification (each result would wake landed twice), so a run
  // removes what an earlier one made first. The bucket is hermetic's alone.
  remove('clear the bucket\'s notifications from an earlier run', ['gcloud', 'storage', 'buckets', 'notifications', 'delete', `gs://${bucket}`, ...p]);
  create(`a result object landing under ${resultNotification.prefix} publishes to ${resultNotification.topic}, which wakes landed`, [
    'gcloud', 'storage', 'buckets', 'notifications', 'create', `gs://${bucket}`, `--topic=${topicPath(project, resultNotification.topic)}`,
    `--event-types=${resultNotification.event}`, `--object-prefix=${resultNotification.prefix}`, '--payload-format=json', '--skip-topic-setup', ...p,
  ]);

  create('every minute, look for new commits', [
    'gcloud', 'scheduler', 'jobs', 'create', 'pubsub', 'hermetic-poll', `--location=${region}`, `--schedule=${names.schedules.poll}`,
    `--topic=${topicPath(project, deployedFunctions.poll.topic)}`, '--message-body={"v":1}', ...p,
  ]);
  create('every two minutes, remove workers past their deadline', [
    'gcloud', 'scheduler', 'jobs', 'create', 'pubsub', 'hermetic-reap', `--location=${region}`, `--schedule=${names.schedules.reap}`,
    `--topic=${topicPath(project, deployedFunctions.reap.topic)}`, '--message-body={"v":1}', ...p,
  ]);

  add('the dashboard, on App Engine, built and run as the build account', [
    'gcloud', 'app', 'deploy', `--appyaml=${appYamlFile}`, `--service-account=${names.buildAccount}`, '--quiet', ...p,
  ], { writes: { path: appYamlFile, text: appYaml(names) } });
  return commands;
}

/**
 * Every command that removes what `deployPlan` made, in reverse order, workers included (every VM labelled
 * hermetic-task), with the project-level grants, so no binding is left naming a deleted account. The App Engine
 * application stays: App Engine cannot delete one (see teardownNotes). Each step is safe to run again: a delete that
 * finds its resource gone counts as done.
 */
export function teardownPlan(options: PlanOptions): Command[] {
  const names = planNames(options);
  const { project, region, bucket } = names;
  const p = ['--project', project];
  const { commands, remove } = collector();
  const { functionsMember, eventsMember, buildMember } = memberFlags(names);

  for (const job of ['hermetic-reap', 'hermetic-poll']) {
    remove('stop the scheduled ticks first, so nothing new starts', ['gcloud', 'scheduler', 'jobs', 'delete', job, `--location=${region}`, '--quiet', ...p]);
  }
  remove('results stop waking anything', ['gcloud', 'storage', 'buckets', 'notifications', 'delete', `gs://${bucket}`, ...p]);
  if (names.github !== undefined) {
    remove('the webhook function', ['gcloud', 'functions', 'delete', serviceNameOf('webhook'), '--gen2', `--region=${region}`, '--quiet', ...p]);
  }
  for (const [name] of cloudFunctions().reverse()) {
    const service = serviceNameOf(name);
    remove(`the ${name} function, with its Eventarc trigger and subscription`, ['gcloud', 'functions', 'delete', service, '--gen2', `--region=${region}`, '--quiet', ...p]);
  }
  remove(`find this deployment's workers still alive (VMs labelled ${workerLabel} and its ID)`, [
    'gcloud', 'compute', 'instances', 'list', `--filter=${workerFilter(bucket)}`, `--zones=${names.zone}`, '--format=value(name)', ...p,
  ], { sets: 'WORKERS' });
  remove('delete them: nothing a task started outlives the deploy', ['gcloud', 'compute', 'instances', 'delete', '${WORKERS}', `--zone=${names.zone}`, '--quiet', ...p]);

  for (const secret of Object.values(names.github === undefined ? {} : githubSecrets(names.github)).reverse()) {
    remove(`the secret ${secret}, and the grant on it`, ['gcloud', 'secrets', 'delete', secret, '--quiet', ...p]);
  }

  remove('the builder images and their repository', ['gcloud', 'artifacts', 'repositories', 'delete', names.imageRepo, `--location=${region}`, '--quiet', ...p]);

  for (const role of [...grants.build.project].reverse()) {
    remove(`builds and the dashboard: ${role}`, [
      'gcloud', 'projects', 'remove-iam-policy-binding', project, buildMember, `--role=${role}`, '--condition=None',
    ]);
  }
  for (const role of [...grants.events.project].reverse()) {
    remove(`event delivery: ${role}`, [
      'gcloud', 'projects', 'remove-iam-policy-binding', project, eventsMember, `--role=${role}`, '--condition=None',
    ]);
  }
  for (const role of [...grants.functions.project].reverse()) {
    remove(`functions: ${role}`, [
      'gcloud', 'projects', 'remove-iam-policy-binding', project, functionsMember, `--role=${role}`, '--condition=None',
    ]);
  }
  for (const id of [accountIds.build, accountIds.worker, accountIds.events, accountIds.functions]) {
    remove(`the ${id} account, and the grants on it`, ['gcloud', 'iam', 'service-accounts', 'delete', `${id}@${project}.iam.gserviceaccount.com`, '--quiet', ...p]);
  }

  for (const topic of topicsToCreate().reverse()) {
    remove(`the topic ${topic}, and the grants on it`, ['gcloud', 'pubsub', 'topics', 'delete', topic, ...p]);
  }
  remove('the blobs bucket and every object in it', ['gcloud', 'storage', 'rm', '--recursive', `gs://${bucket}`, ...p]);
  remove('the Firestore database: every build, task and verdict', ['gcloud', 'firestore', 'databases', 'delete', '--database=(default)', '--quiet', ...p]);
  return commands;
}

/** What teardown cannot remove, for the person running it. */
export const teardownNotes = [
  'App Engine cannot delete an application: the dashboard stays deployed, scaled to zero (it costs nothing idle). ' +
    'Disable it under App Engine > Settings in the console, or delete the project.',
  'The APIs stay enabled: other things in the project may use them.',
];
