import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { triggers } from '../../shared/runtimes/google-cloud/functions.ts';
import { appEngineClasses, dashboardSize, functionSizes, headroom, sizeFor, type FunctionSize } from '../../shared/runtimes/google-cloud/function-sizes.ts';
import {
  firestoreIndexes,
  deadLetterTopic,
  deployedFunctions,
  deployPlan,
  services,
  lifecycleConfig,
  lifecycleFile,
  resultNotification,
  serviceNameOf,
  teardownPlan,
  workerFilter,
  workerLabel,
  type Command,
} from '../../shared/runtimes/google-cloud/deploy-plan.ts';
import { deploy, expand, runPlan, shellLine, teardown, type DeployDeps, type ExecResult } from '../../shared/cli/deploy.ts';
import type { Io } from '../../shared/cli/io.ts';
import { main } from '../../shared/cli/main.ts';
import { requiredVariables } from '../../shared/adapters/gcp/environment.ts';
import { blobKeys } from '../../shared/core/model/wire.ts';
import { collections } from '../../shared/ports/state.ts';

const place = { project: 'hermetic-test-1', region: 'europe-west4', zone: 'europe-west4-a' };
const images = [
  { hostType: 'linux-amd64', tag: 'hermetic/linux-amd64:0123456789ab' },
  { hostType: 'linux-arm64', tag: 'hermetic/linux-arm64:ba9876543210' },
];
const plan = deployPlan({ ...place, images });
const down = teardownPlan(place);
/** With GitHub access: the webhook function and its secrets besides. */
const github = { auth: 'token' } as const;
const githubPlan = deployPlan({ ...place, images, github });
const githubDown = teardownPlan({ ...place, github });
const projectDir = fileURLToPath(new URL('../../', import.meta.url));

/** What the composition root reads: set on every function and on App Engine. */
const requiredEnv = [...requiredVariables.map((variable) => variable.name), 'HERMETIC_CONFIG', 'HERMETIC_MAX_DELIVERY_ATTEMPTS'];

const functionsAccount = `hermetic-functions@${place.project}.iam.gserviceaccount.com`;
const eventsAccount = `hermetic-events@${place.project}.iam.gserviceaccount.com`;
const workerAccount = `hermetic-worker@${place.project}.iam.gserviceaccount.com`;
const buildAccount = `hermetic-build@${place.project}.iam.gserviceaccount.com`;
const bucket = `gs://${place.project}-hermetic`;

/** `--name=value` of a command, or undefined; every value when repeated. */
function flag(command: Command, name: string): string | undefined {
  return flags(command, name)[0];
}
function flags(command: Command, name: string): string[] {
  return command.argv.filter((arg) => arg.startsWith(`--${name}=`)).map((arg) => arg.slice(name.length + 3));
}
function starts(command: Command, ...words: string[]): boolean {
  return words.every((word, index) => command.argv[index] === word);
}
function find(commands: readonly Command[], ...words: string[]): Command[] {
  return commands.filter((command) => starts(command, ...words));
}
function envOf(command: Command): Map<string, string> {
  const value = flag(command, 'set-env-vars') ?? '';
  return new Map(value.split(',').map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
}
/** The command that sets a variable, by name. */
function setter(commands: readonly Command[], name: string): Command | undefined {
  return commands.find((command) => command.sets === name);
}

describe('deploy plan', () => {
  const deploys = find(plan, 'gcloud', 'functions', 'deploy');
  const deployOf = (entryPoint: string) => deploys.find((command) => flag(command, 'entry-point') === entryPoint);

  it('deploys every function in triggers, plus landed, deadLetter and the dashboard', () => {
    for (const name of [...Object.keys(triggers), 'landed', 'deadLetter']) {
      const command = deployOf(name);
      assert.ok(command, `no deploy of ${name}`);
      assert.equal(command.argv[3], serviceNameOf(name));
      assert.match(command.argv[3] ?? '', /^[a-z][a-z0-9-]*$/, 'a Cloud Run service name is lower case');
      for (const required of ['--gen2', '--runtime=nodejs22', `--region=${place.region}`, '--source=.', '--retry', `--service-account=${functionsAccount}`]) {
        assert.ok(command.argv.includes(required), `${name} lacks ${required}`);
      }
    }
    assert.equal(deploys.length, Object.keys(triggers).length, 'nothing else is deployed as a function');
    const app = find(plan, 'gcloud', 'app', 'deploy');
    assert.equal(app.length, 1, 'the dashboard goes to App Engine');
    const yaml = app[0]?.writes?.text ?? '';
    assert.match(yaml, /^runtime: nodejs22$/m);
    const entrypoint = /^entrypoint: node (\S+) --target=dashboard --signature-type=http$/m.exec(yaml);
    assert.ok(entrypoint?.[1] && existsSync(new URL(`../../${entrypoint[1]}`, import.meta.url)), 'App Engine serves the dashboard function with functions-framework');
    assert.equal(find(plan, 'gcloud', 'app', 'create').length, 1);
    assert.equal(deployedFunctions.dashboard.kind, 'http');
  });

  it('gives each function the topic triggers names, and wakes landed by a bucket notification on results only', () => {
    for (const [name, topic] of Object.entries(triggers)) assert.deepEqual(flags(deployOf(name)!, 'trigger-topic'), [topic]);
    assert.equal(triggers.deadLetter, deadLetterTopic);
    const notify = find(plan, 'gcloud', 'storage', 'buckets', 'notifications', 'create');
    assert.equal(notify.length, 1);
    assert.equal(notify[0]?.argv[5], bucket);
    assert.equal(flag(notify[0]!, 'topic'), `projects/${place.project}/topics/${triggers.landed}`);
    assert.equal(flag(notify[0]!, 'event-types'), 'OBJECT_FINALIZE');
    assert.equal(flag(notify[0]!, 'payload-format'), 'json');
    const prefix = flag(notify[0]!, 'object-prefix') ?? '';
    assert.equal(prefix, resultNotification.prefix);
    assert.ok(blobKeys.result('0123456789abcdef01234567').startsWith(prefix));
    for (const key of [blobKeys.source('r', 'c'), blobKeys.logChunk('t', 0), blobKeys.snapshot('k'), blobKeys.snapshotUnits('k'), blobKeys.mergedLog('b')]) {
      assert.ok(!key.startsWith(prefix), `${key} would wake landed`);
    }
    // A re-run clears the earlier notification first, or each result would wake landed twice.
    const clear = plan.findIndex((command) => starts(command, 'gcloud', 'storage', 'buckets', 'notifications', 'delete', bucket));
    assert.ok(clear >= 0 && clear < plan.indexOf(notify[0]!));
  });

  it('creates every topic a function listens on, before the function, and a dead-letter policy on its subscription', () => {
    const created = find(plan, 'gcloud', 'pubsub', 'topics', 'create').map((command) => command.argv[4]);
    assert.ok(created.includes(deadLetterTopic));
    const listened: Array<[string, string]> = [...Object.entries(triggers), ['deadLetter', deadLetterTopic]];
    for (const [name, topic] of listened) {
      assert.ok(created.includes(topic), `topic ${topic} of ${name} is not created`);
      const createdAt = plan.findIndex((command) => starts(command, 'gcloud', 'pubsub', 'topics', 'create', topic));
      assert.ok(createdAt < plan.indexOf(deployOf(name)!), `${topic} is created after ${name} is deployed`);
    }
    // Every function but the recorder of dead letters: its Eventarc trigger -> subscription -> dead-letter policy.
    for (const name of Object.keys(triggers).filter((name) => name !== 'deadLetter')) {
      const service = serviceNameOf(name);
      const describe = plan.find((command) => starts(command, 'gcloud', 'functions', 'describe', service));
      assert.ok(describe?.sets, `no look-up of ${service}'s trigger`);
      assert.ok(plan.indexOf(describe) > plan.indexOf(deployOf(name)!));
      const subscription = plan.find((command) => starts(command, 'gcloud', 'eventarc', 'triggers', 'describe', `\${${describe.sets}}`));
      assert.ok(subscription?.sets, `no look-up of ${service}'s subscription`);
      const update = plan.find((command) => starts(command, 'gcloud', 'pubsub', 'subscriptions', 'update', `\${${subscription.sets}}`));
      assert.ok(update, `${service}'s subscription gets no dead-letter policy`);
      assert.equal(flag(update, 'dead-letter-topic'), deadLetterTopic);
      assert.ok(Number(flag(update, 'max-delivery-attempts')) >= 5);
      const subscriber = plan.find(
        (command) => starts(command, 'gcloud', 'pubsub', 'subscriptions', 'add-iam-policy-binding', `\${${subscription.sets}}`),
      );
      assert.equal(subscriber && flag(subscriber, 'role'), 'roles/pubsub.subscriber');
    }
  });

  it('creates the bucket every function writes, with expiry rules for every kind of blob', () => {
    const buckets = find(plan, 'gcloud', 'storage', 'buckets', 'create').map((command) => command.argv[4]);
    for (const command of deploys) assert.ok(buckets.includes(`gs://${envOf(command).get('HERMETIC_BUCKET')}`), `${command.argv[3]} writes a bucket not created`);
    for (const command of find(plan, 'gcloud', 'storage', 'buckets', 'notifications')) assert.ok(buckets.includes(command.argv[5] ?? ''));
    const update = find(plan, 'gcloud', 'storage', 'buckets', 'update')[0];
    assert.equal(update && flag(update, 'lifecycle-file'), lifecycleFile);
    const file = JSON.parse(readFileSync(new URL(`../../${lifecycleFile}`, import.meta.url), 'utf8')) as ReturnType<typeof lifecycleConfig>;
    assert.deepEqual(file, lifecycleConfig(), `${lifecycleFile} is out of date`);
    const keys = [blobKeys.source('r', 'c'), blobKeys.logChunk('t', 0), blobKeys.result('t'), blobKeys.snapshot('k'), blobKeys.snapshotUnits('k'), blobKeys.mergedLog('b'), blobKeys.modules('k')];
    for (const key of keys) {
      const rules = file.rule.filter((rule) => rule.condition.matchesPrefix.some((prefix) => key.startsWith(prefix)));
      assert.equal(rules.length, 1, `${key} should expire by exactly one rule`);
    }
  });

  it('sets every variable the composition root reads on every function and on App Engine', () => {
    for (const command of deploys) {
      const env = envOf(command);
      for (const name of requiredEnv) assert.ok((env.get(name) ?? '') !== '', `${command.argv[3]} lacks ${name}`);
      assert.equal(env.get('HERMETIC_WORKER_SA'), workerAccount);
      assert.equal(env.get('HERMETIC_BUCKET'), bucket.slice(5));
      assert.equal(env.get('HERMETIC_ZONE'), place.zone);
    }
    const yaml = find(plan, 'gcloud', 'app', 'deploy')[0]?.writes?.text ?? '';
    for (const name of requiredEnv) assert.match(yaml, new RegExp(`^  ${name}: ".+"$`, 'm'));
    // Every variable a command uses is set by an earlier one.
    const variables = new Set<string>();
    for (const command of plan) {
      for (const match of `${command.argv.join(' ')} ${command.writes?.text ?? ''}`.matchAll(/\$\{([A-Z_]+)/g)) {
        assert.ok(variables.has(match[1] ?? ''), `${match[1]} is used before it is set`);
      }
      if (command.sets !== undefined) variables.add(command.sets);
    }
  });

  it('grants no role broader than needed, and the worker account none', () => {
    const pubsubAgent = `serviceAccount:service-\${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com`;
    const allowed: Record<string, string[]> = {
      [`serviceAccount:${functionsAccount}`]: [
        `project:roles/datastore.user`,
        `project:roles/pubsub.publisher`,
        `project:roles/compute.instanceAdmin.v1`,
        `bucket ${bucket}:roles/storage.objectAdmin`,
        `account ${workerAccount}:roles/iam.serviceAccountUser`,
        `account ${functionsAccount}:roles/iam.serviceAccountTokenCreator`,
        'secret hermetic-webhook-secret:roles/secretmanager.secretAccessor',
        'secret hermetic-github-token:roles/secretmanager.secretAccessor',
      ],
      [`serviceAccount:${eventsAccount}`]: ['project:roles/eventarc.eventReceiver', 'function:roles/run.invoker'],
      // Builds, and the dashboard, which App Engine runs as the account it built it as: reading, nothing more.
      [`serviceAccount:${buildAccount}`]: ['project:roles/cloudbuild.builds.builder', 'project:roles/datastore.viewer', `bucket ${bucket}:roles/storage.objectViewer`],
      [pubsubAgent]: [
        `topic ${deadLetterTopic}:roles/pubsub.publisher`,
        'subscription:roles/pubsub.subscriber',
        // Authenticated push: Pub/Sub mints each push's token as the event-delivery account, and as no other.
        `account ${eventsAccount}:roles/iam.serviceAccountTokenCreator`,
      ],
      'serviceAccount:${STORAGE_AGENT}': [`topic ${triggers.landed}:roles/pubsub.publisher`],
      // Workers have no credentials: their VMs pull the builder images anonymously, from the one repository.
      allUsers: ['repository hermetic:roles/artifactregistry.reader'],
    };
    let grants = 0;
    for (const command of githubPlan) {
      const [, group, kind, , resource] = command.argv;
      const binding = command.argv.includes('add-iam-policy-binding') || command.argv.includes('add-invoker-policy-binding');
      if (!binding) continue;
      grants++;
      const member = flag(command, 'member') ?? '';
      const role = flag(command, 'role') ?? 'roles/run.invoker';
      assert.doesNotMatch(role, /^roles\/(editor|owner|viewer)$/);
      assert.notEqual(member, `serviceAccount:${workerAccount}`, 'the worker account gets no role');
      const scope =
        group === 'secrets'
          ? `secret ${command.argv[3]}`
          : group === 'projects'
          ? 'project'
          : group === 'storage'
            ? `bucket ${resource}`
            : group === 'iam'
              ? `account ${resource}`
              : group === 'pubsub' && kind === 'topics'
                ? `topic ${resource}`
                : group === 'pubsub'
                  ? 'subscription'
                  : group === 'artifacts'
                    ? `repository ${resource}`
                    : 'function';
      assert.ok((allowed[member] ?? []).includes(`${scope}:${role}`), `${member} is granted ${role} on ${scope}, which is not on its list`);
    }
    assert.ok(grants >= 10);
    for (const command of deploys) assert.equal(flag(command, 'trigger-service-account'), eventsAccount);
  });

  it('tags and pushes each builder image to the repository it creates', () => {
    for (const image of images) {
      const remote = `\${IMAGE_REPO}/${image.tag.slice('hermetic/'.length)}`;
      assert.ok(plan.some((command) => starts(command, 'docker', 'tag', image.tag, remote)));
      assert.ok(plan.some((command) => starts(command, 'docker', 'push', remote)));
    }
    assert.equal(setter(plan, 'IMAGE_REPO')?.argv.slice(0, 5).join(' '), 'gcloud artifacts repositories describe hermetic');
    assert.equal(find(deployPlan(place), 'docker').length, 0, 'no images, no docker');
  });

  it('schedules the poll and reap ticks on their functions\' topics, named in full: no default project is assumed', () => {
    const jobs = find(plan, 'gcloud', 'scheduler', 'jobs', 'create', 'pubsub');
    assert.deepEqual(jobs.map((command) => flag(command, 'topic')).sort(), [triggers.poll, triggers.reap].map((topic) => `projects/${place.project}/topics/${topic}`).sort());
    for (const job of jobs) assert.equal(flag(job, 'message-body'), '{"v":1}');
  });

  it('enables the APIs that service accounts, grants and the project\'s policy need', () => {
    const enable = find(plan, 'gcloud', 'services', 'enable')[0];
    assert.ok(enable);
    for (const api of ['iam.googleapis.com', 'cloudresourcemanager.googleapis.com', 'iamcredentials.googleapis.com']) {
      assert.ok(services.includes(api) && enable.argv.includes(api), api);
    }
    assert.equal(plan.indexOf(enable), 0, 'before anything uses them');
  });

  it('makes sure the Pub/Sub service agent exists before any grant names it', () => {
    const identity = plan.findIndex((command) => starts(command, 'gcloud', 'beta', 'services', 'identity', 'create') && flag(command, 'service') === 'pubsub.googleapis.com');
    assert.ok(identity > 0);
    const firstGrant = plan.findIndex((command) => command.argv.some((arg) => arg.includes('@gcp-sa-pubsub.')));
    assert.ok(firstGrant > identity);
  });

  it('builds every function as the build account, which is made before, and the dashboard too', () => {
    const created = plan.findIndex((command) => starts(command, 'gcloud', 'iam', 'service-accounts', 'create', 'hermetic-build'));
    assert.ok(created >= 0);
    for (const command of find(githubPlan, 'gcloud', 'functions', 'deploy')) {
      // gcloud's form: projects/PROJECT/serviceAccounts/EMAIL.
      assert.equal(flag(command, 'build-service-account'), `projects/${place.project}/serviceAccounts/${buildAccount}`, command.argv[3]);
      assert.equal(flag(command, 'service-account'), functionsAccount, 'it runs as the functions\' account');
    }
    // gcloud app deploy takes no build account: App Engine builds a version as the account it runs it as.
    const app = find(plan, 'gcloud', 'app', 'deploy')[0];
    assert.ok(app && plan.indexOf(app) > created);
    assert.equal(flag(app, 'service-account'), buildAccount);
    assert.equal(flags(app, 'build-service-account').length, 0);
  });

  it('sizes every function from the table, as measured, within Cloud Run\'s rules', () => {
    const functionDeploys = find(githubPlan, 'gcloud', 'functions', 'deploy');
    assert.deepEqual(functionDeploys.map((command) => flag(command, 'entry-point')).sort(), Object.keys(functionSizes).sort(), 'one row a function');
    for (const command of functionDeploys) {
      const size: FunctionSize = functionSizes[flag(command, 'entry-point') as keyof typeof functionSizes];
      assert.deepEqual(flags(command, 'memory'), [`${size.memoryMiB}Mi`]);
      assert.deepEqual(flags(command, 'cpu'), [String(size.cpu)]);
      assert.equal(cloudRunRefuses(size.memoryMiB, size.cpu), undefined, command.argv[3]);
    }
    for (const [name, size] of Object.entries(functionSizes) as Array<[string, FunctionSize]>) {
      assert.ok(size.measuredMiB > 0, `${name} is measured`);
      assert.deepEqual(sizeFor(size.sizedForMiB ?? size.measuredMiB), { memoryMiB: size.memoryMiB, cpu: size.cpu }, `${name} follows the headroom rule`);
    }
    // The dashboard on App Engine, by the same rule: the smallest instance class with the headroom.
    const [smallest] = Object.entries(appEngineClasses).filter(([, memory]) => memory >= dashboardSize.measuredMiB * headroom);
    assert.equal(dashboardSize.instanceClass, smallest?.[0]);
    assert.match(find(plan, 'gcloud', 'app', 'deploy')[0]?.writes?.text ?? '', new RegExp(`^instance_class: ${dashboardSize.instanceClass}$`, 'm'));
  });

  it('holds the sizes to Cloud Run\'s rules', () => {
    assert.equal(cloudRunRefuses(256, 0.167), undefined);
    assert.equal(cloudRunRefuses(512, 1), undefined);
    assert.match(cloudRunRefuses(1024, 0.333) ?? '', /at least 0.5/);
    assert.match(cloudRunRefuses(2048, 0.5) ?? '', /at least 1/);
    assert.match(cloudRunRefuses(8192, 1) ?? '', /at most 4096/);
    assert.match(cloudRunRefuses(1024, 3) ?? '', /1, 2, 4, 6 or 8/);
    assert.match(cloudRunRefuses(1024, 4) ?? '', /at least 2048/);
  });
});

/**
 * What Cloud Run (under Cloud Functions 2nd gen) refuses in a memory and CPU pair, per its CPU limits page: below 1 vCPU,
 * memory over 512 MiB needs 0.5 and over 1 GiB a whole vCPU; above 1, whole counts of 2, 4, 6 or 8, each with its
 * memory range.
 */
function cloudRunRefuses(memoryMiB: number, cpu: number): string | undefined {
  if (cpu < 1) {
    if (cpu < 0.08) return 'a CPU of at least 0.08';
    if (memoryMiB > 1024) return 'memory over 1 GiB needs a CPU of at least 1';
    if (memoryMiB > 512 && cpu < 0.5) return 'memory over 512 MiB needs a CPU of at least 0.5';
    return undefined;
  }
  const ranges: Record<number, [number, number]> = { 1: [128, 4096], 2: [128, 8192], 4: [2048, 16384], 6: [4096, 24576], 8: [4096, 32768] };
  const range = ranges[cpu];
  if (range === undefined) return 'a CPU above 1 is 1, 2, 4, 6 or 8';
  if (memoryMiB < range[0]) return `${cpu} vCPUs need at least ${range[0]} MiB`;
  if (memoryMiB > range[1]) return `${cpu} vCPUs allow at most ${range[1]} MiB`;
  return undefined;
}

/** A resource a command makes or removes, as `kind name`. */
function resourceOf(command: Command): { made?: string; removed?: string } | undefined {
  const a = command.argv;
  const at = (...words: string[]) => words.every((word, index) => a[index] === word);
  if (at('gcloud', 'firestore', 'databases', 'create')) return { made: 'database (default)' };
  if (at('gcloud', 'firestore', 'databases', 'delete')) return { removed: `database ${flag(command, 'database')}` };
  if (at('gcloud', 'storage', 'buckets', 'create')) return { made: `bucket ${a[4]}` };
  if (at('gcloud', 'storage', 'rm', '--recursive')) return { removed: `bucket ${a[4]}` };
  if (at('gcloud', 'pubsub', 'topics', 'create')) return { made: `topic ${a[4]}` };
  if (at('gcloud', 'pubsub', 'topics', 'delete')) return { removed: `topic ${a[4]}` };
  if (at('gcloud', 'iam', 'service-accounts', 'create')) return { made: `account ${a[4]}@${place.project}.iam.gserviceaccount.com` };
  if (at('gcloud', 'iam', 'service-accounts', 'delete')) return { removed: `account ${a[4]}` };
  if (at('gcloud', 'projects', 'add-iam-policy-binding')) return { made: `grant ${flag(command, 'member')} ${flag(command, 'role')}` };
  if (at('gcloud', 'projects', 'remove-iam-policy-binding')) return { removed: `grant ${flag(command, 'member')} ${flag(command, 'role')}` };
  if (at('gcloud', 'artifacts', 'repositories', 'create')) return { made: `repository ${a[4]}` };
  if (at('gcloud', 'artifacts', 'repositories', 'delete')) return { removed: `repository ${a[4]}` };
  if (at('gcloud', 'functions', 'deploy')) return { made: `function ${a[3]}` };
  if (at('gcloud', 'secrets', 'create')) return { made: `secret ${a[3]}` };
  if (at('gcloud', 'secrets', 'delete')) return { removed: `secret ${a[3]}` };
  if (at('gcloud', 'functions', 'delete')) return { removed: `function ${a[3]}` };
  if (at('gcloud', 'scheduler', 'jobs', 'create', 'pubsub')) return { made: `job ${a[5]}` };
  if (at('gcloud', 'storage', 'buckets', 'notifications', 'create')) return { made: `notification ${a[5]}` };
  if (at('gcloud', 'storage', 'buckets', 'notifications', 'delete')) return { removed: `notification ${a[5]}` };
  if (at('gcloud', 'scheduler', 'jobs', 'delete')) return { removed: `job ${a[4]}` };
  return undefined;
}

describe('Firestore indexes', () => {
  it('creates each composite index, on fields the state store writes out for queries', () => {
    for (const index of firestoreIndexes) {
      const collection = Object.values(collections).find((candidate) => candidate.name === index.collection);
      assert.ok(collection?.indexed.includes(index.field) && collection.indexed.includes(index.orderBy), `${index.collection} indexes ${index.field} and ${index.orderBy}`);
      assert.ok(
        plan.some((command) => command.argv.includes(`--collection-group=${index.collection}`) && command.argv.includes(`--field-config=field-path=${index.field},order=ascending`)),
        `an index for ${index.collection} by ${index.field}`,
      );
    }
  });

  it('exempts the JSON text of every collection from indexing', () => {
    for (const collection of Object.values(collections)) {
      assert.ok(plan.some((command) => command.argv.join(' ').includes(`fields update json --collection-group=${collection.name} --disable-indexes`)), collection.name);
    }
  });
});

describe('deploy plan with --github', () => {
  it('deploys the webhook public (GitHub signs its deliveries) and the rest internal, every one reading the secrets', () => {
    const functionDeploys = find(githubPlan, 'gcloud', 'functions', 'deploy');
    const webhook = functionDeploys.find((command) => command.argv[3] === 'webhook');
    assert.ok(webhook);
    assert.ok(webhook.argv.includes('--trigger-http') && webhook.argv.includes('--allow-unauthenticated'));
    assert.equal(flag(webhook, 'ingress-settings'), 'all');
    for (const command of functionDeploys) {
      assert.equal(flag(command, 'set-secrets'), 'HERMETIC_WEBHOOK_SECRET=hermetic-webhook-secret:latest,GITHUB_TOKEN=hermetic-github-token:latest', command.argv[3]);
      assert.match(flag(command, 'set-env-vars') ?? '', /HERMETIC_GITHUB_AUTH=token/);
      if (command !== webhook) assert.equal(flag(command, 'ingress-settings'), 'internal-only');
    }
    assert.ok(setter(githubPlan, 'WEBHOOK_URL'), "the webhook's address is looked up");
    // App Engine holds no secret, and the dashboard asks GitHub nothing: its app.yaml claims no GitHub access.
    const yaml = find(githubPlan, 'gcloud', 'app', 'deploy')[0]?.writes?.text ?? '';
    assert.match(yaml, /^  HERMETIC_PROJECT: /m);
    assert.doesNotMatch(yaml, /GITHUB|WEBHOOK/);
    assert.equal(find(plan, 'gcloud', 'secrets').length, 0, 'no secrets without --github');
    assert.ok(!find(plan, 'gcloud', 'functions', 'deploy').some((command) => command.argv[3] === 'webhook'));
  });

  it('checks that each secret holds a value before any function reads it', () => {
    const firstFunction = githubPlan.findIndex((command) => starts(command, 'gcloud', 'functions', 'deploy'));
    for (const secret of ['hermetic-webhook-secret', 'hermetic-github-token']) {
      const check = githubPlan.findIndex((command) => starts(command, 'gcloud', 'secrets', 'versions', 'describe', 'latest') && flag(command, 'secret') === secret);
      assert.ok(check >= 0 && check < firstFunction, secret);
    }
    const app = deployPlan({ ...place, github: { auth: 'app', appId: '12345' } });
    assert.equal(flag(find(app, 'gcloud', 'functions', 'deploy')[0]!, 'set-secrets'), 'HERMETIC_WEBHOOK_SECRET=hermetic-webhook-secret:latest,GITHUB_APP_PRIVATE_KEY=hermetic-github-app-key:latest');
    assert.match(flag(find(app, 'gcloud', 'functions', 'deploy')[0]!, 'set-env-vars') ?? '', /HERMETIC_GITHUB_APP_ID=12345/);
  });
});

describe('teardown plan', () => {
  const pairs = [
    ['', plan, down],
    [' (with --github)', githubPlan, githubDown],
  ] as const;
  for (const [label, plan, down] of pairs) {
    it(`removes each resource that deploy creates, and nothing else${label}`, () => {
      const made = plan.flatMap((command) => resourceOf(command)?.made ?? []);
      const removed = down.flatMap((command) => resourceOf(command)?.removed ?? []);
      assert.ok(made.length >= 25);
      assert.deepEqual([...removed].sort(), [...made].sort());
    });

    it(`removes them in reverse order of their making${label}`, () => {
      const made = plan.flatMap((command) => resourceOf(command)?.made ?? []);
      const removed = down.flatMap((command) => resourceOf(command)?.removed ?? []);
      const kinds = (list: string[]) => [...new Set(list.map((resource) => resource.split(' ')[0]))];
      // Grants go before the accounts they name; the rest in the reverse of the order they were made.
      assert.deepEqual(kinds(removed).filter((kind) => kind !== 'grant'), kinds(made).filter((kind) => kind !== 'grant').reverse());
      assert.ok(kinds(removed).indexOf('grant') < kinds(removed).indexOf('account'));
      assert.equal(kinds(removed)[0], 'job', 'the ticks stop first');
    });
  }

  it("deletes every worker VM of this deployment, and no other's, after the functions that start them are gone", () => {
    const list = setter(down, 'WORKERS');
    assert.ok(list);
    assert.equal(flag(list, 'filter'), workerFilter(bucket.slice('gs://'.length)));
    assert.match(flag(list, 'filter') ?? '', new RegExp(`^labels\\.${workerLabel}:\\* AND labels\\.hermetic-deployment=[0-9a-f]{8}$`));
    const remove = down.find((command) => starts(command, 'gcloud', 'compute', 'instances', 'delete', '${WORKERS}'));
    assert.ok(remove);
    const lastFunction = Math.max(...find(down, 'gcloud', 'functions', 'delete').map((command) => down.indexOf(command)));
    assert.ok(down.indexOf(list) > lastFunction);
  });
});

/** An in-memory Io: what a command printed, line by line. */
function memoryIo(): Io & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { cwd: projectDir, out, err, stdout: (text) => out.push(text), stderr: (text) => err.push(text), interrupted: new Promise(() => {}) };
}

/** A gcloud that answers from a script: each call gets the first rule whose pattern matches its command line. */
function fakeGcloud(rules: Array<[RegExp, Partial<ExecResult>]>) {
  const calls: string[][] = [];
  const exec: DeployDeps['exec'] = async (argv) => {
    calls.push(argv);
    const line = argv.join(' ');
    const rule = rules.find(([pattern]) => pattern.test(line));
    return { code: 0, stdout: '', stderr: '', ...rule?.[1] };
  };
  return { calls, exec };
}

const fakeDeps = (exec: DeployDeps['exec'], written: Map<string, string> = new Map()): Partial<DeployDeps> => ({
  exec,
  onPath: async () => true,
  images: async () => images,
  writeFile: async (path, text) => void written.set(path, text),
  cwd: '/nowhere',
});

describe('hermetic deploy and teardown', () => {
  it('--dry-run prints every command, one per line, on stdout and nothing else there', async () => {
    const io = memoryIo();
    const code = await deploy(['--project', place.project, '--region', place.region, '--zone', place.zone, '--dry-run'], io, fakeDeps(async () => assert.fail('a dry run runs nothing')));
    assert.equal(code, 0);
    assert.deepEqual(io.out, plan.map(shellLine));
    assert.ok(io.out.every((line) => !line.includes('\n')));
    assert.deepEqual(io.err, []);
  });

  it('hermetic deploy --dry-run works from the command line, with the images this checkout would build', async () => {
    const io = memoryIo();
    assert.equal(await main(['deploy', '--project', place.project, '--region', place.region, '--dry-run'], io), 0);
    assert.ok(io.out.length > 50);
    assert.ok(io.out.every((line) => /^(gcloud|docker) |^[A-Z_]+=\$\((gcloud|docker) .*\)$/.test(line)), 'stdout holds commands only');
    assert.ok(io.out.some((line) => /^docker push "\$\{IMAGE_REPO\}"\/linux-amd64:[0-9a-f]{12}$/.test(line)));
    assert.ok(io.err.every((line) => line.startsWith('hermetic: skipping the ')), io.err.join('\n'));
  });

  it('--dry-run lines are shell: sh reads each back into its argument vector', () => {
    const variables = new Map([
      ['PROJECT_NUMBER', '123456'],
      ['IMAGE_REPO', 'example.test/p/hermetic'],
      ['DASHBOARD_HOST', 'p.example.test'],
      ['STORAGE_AGENT', 'agent@example.test'],
      ...plan.flatMap((command) => (command.sets?.match(/^(TRIGGER|SUB)_/) ? [[command.sets, `${command.sets.toLowerCase()}-1`] as [string, string]] : [])),
    ]);
    const sample = plan.filter((command) => command.argv.some((arg) => /[{}'"* ()$]/.test(arg)));
    assert.ok(sample.length > 10);
    for (const command of sample) {
      const line = shellLine({ argv: ['printf', '%s\\0', ...command.argv], why: 'test' });
      const env = Object.fromEntries(variables);
      const printed = execFileSync('sh', ['-c', line], { env: { ...env, PATH: process.env['PATH'] ?? '' }, encoding: 'utf8' });
      assert.deepEqual(printed.split('\0').slice(0, -1), expand(command.argv, variables), line);
    }
  });

  it('--dry-run --json prints the plan as JSON', async () => {
    const io = memoryIo();
    assert.equal(await teardown(['--project', place.project, '--region', place.region, '--zone', place.zone, '--dry-run', '--json'], io, fakeDeps(async () => assert.fail())), 0);
    assert.deepEqual(JSON.parse(io.out.join('\n')), JSON.parse(JSON.stringify(down)));
  });

  it('refuses a malformed project, region or zone with exit 2, saying why', async () => {
    for (const [args, pattern] of [
      [['--project', 'My_Project', '--region', 'us-central1'], /project ID is 6 to 30 lower-case/],
      [['--project', 'abc', '--region', 'us-central1'], /project ID/],
      [['--project', 'ends-with-hyphen-', '--region', 'us-central1'], /project ID/],
      [['--project', 'good-project', '--region', 'us central'], /expected a region/],
      [['--project', 'good-project', '--region', 'us-central1', '--zone', 'europe-west4-a'], /expected a zone of us-central1/],
      [['--region', 'us-central1'], /--project is required/],
      [['--project', 'good-project', '--region', 'us-central1', '--github', 'password'], /--github "password": expected "token" or "app"/],
      [['--project', 'good-project', '--region', 'us-central1', '--github', 'app'], /--github app needs --github-app-id N/],
      [['--project', 'good-project', '--region', 'us-central1', '--github-app-id', '7'], /go with --github/],
      [['--project', 'good-project', '--region', 'us-central1', '--github', 'token', '--github-api-url', 'http://ghe'], /expected an https URL/],
    ] as const) {
      const io = memoryIo();
      assert.equal(await main(['deploy', ...args, '--dry-run'], io), 2, args.join(' '));
      assert.match(io.err.join('\n'), pattern);
      assert.deepEqual(io.out, []);
    }
  });

  it('lists deploy and teardown in --help, and each has its own', async () => {
    const io = memoryIo();
    assert.equal(await main(['--help'], io), 0);
    assert.match(io.out.join('\n'), /^ {2}deploy {6}/m);
    assert.match(io.out.join('\n'), /^ {2}teardown {4}/m);
    for (const command of ['deploy', 'teardown']) {
      const own = memoryIo();
      assert.equal(await main([command, '--help'], own), 0);
      assert.match(own.out.join('\n'), new RegExp(`^Usage: hermetic ${command} --project P --region R`));
    }
  });

  it('says so when gcloud is not on PATH, and a dry run needs none', async () => {
    const io = memoryIo();
    const deps = { ...fakeDeps(async () => assert.fail('nothing runs')), onPath: async () => false };
    assert.equal(await deploy(['--project', place.project, '--region', place.region], io, deps), 1);
    assert.match(io.err.join('\n'), /gcloud is not on PATH/);
    assert.equal(await deploy(['--project', place.project, '--region', place.region, '--dry-run'], memoryIo(), deps), 0);
  });

  it('teardown wants --yes', async () => {
    const io = memoryIo();
    assert.equal(await main(['teardown', '--project', place.project, '--region', place.region], io), 2);
    assert.match(io.err.join('\n'), /--yes/);
  });

  it('runs the commands in order, fills in what look-ups found, and treats "already exists" as done', async () => {
    const gcloud = fakeGcloud([
      [/projects describe/, { stdout: '4242\n' }],
      [/storage service-agent/, { stdout: 'service-4242@gs-project-accounts.iam.gserviceaccount.com\n' }],
      [/repositories describe/, { stdout: 'example.test/hermetic-test-1/hermetic\n' }],
      [/app describe/, { stdout: 'hermetic-test-1.example.test\n' }],
      [/functions describe (\S+)/, { stdout: 'trigger-x\n' }],
      [/eventarc triggers describe/, { stdout: 'eventarc-sub-1\n' }],
      [/topics create poll-tick/, { code: 1, stderr: 'ERROR: Failed to create topic [projects/x/topics/poll-tick]: Resource already exists in the project (resource=poll-tick).' }],
      [/app create/, { code: 1, stderr: 'ERROR: (gcloud.app.create) The project [hermetic-test-1] already contains an App Engine application.' }],
    ]);
    const written = new Map<string, string>();
    const io = memoryIo();
    assert.equal(await deploy(['--project', place.project, '--region', place.region, '--zone', place.zone], io, fakeDeps(gcloud.exec, written)), 0);
    assert.deepEqual(gcloud.calls, plan.map((command) => expand(command.argv, new Map([
      ['PROJECT_NUMBER', '4242'],
      ['STORAGE_AGENT', 'service-4242@gs-project-accounts.iam.gserviceaccount.com'],
      ['IMAGE_REPO', 'example.test/hermetic-test-1/hermetic'],
      ['DASHBOARD_HOST', 'hermetic-test-1.example.test'],
      ...plan.flatMap((c) => (c.sets?.startsWith('TRIGGER_') ? [[c.sets, 'trigger-x'] as [string, string]] : [])),
      ...plan.flatMap((c) => (c.sets?.startsWith('SUB_') ? [[c.sets, 'eventarc-sub-1'] as [string, string]] : [])),
    ]))));
    assert.ok(gcloud.calls.some((argv) => argv.join(' ') === 'gcloud auth configure-docker example.test --quiet'));
    assert.ok(gcloud.calls.some((argv) => argv.includes('--member=serviceAccount:service-4242@gcp-sa-pubsub.iam.gserviceaccount.com')));
    const yaml = written.get('/nowhere/.hermetic/deploy/app.yaml') ?? '';
    assert.match(yaml, /HERMETIC_DASHBOARD_URL: "https:\/\/hermetic-test-1\.example\.test"/);
    assert.match(yaml, /HERMETIC_IMAGE_REPO: "example\.test\/hermetic-test-1\/hermetic"/);
    assert.equal(io.err.filter((line) => line.endsWith('already there')).length, 2);
    assert.match(io.err.at(-1) ?? '', /deploy done/);
    assert.deepEqual(io.out, []);
  });

  it('stops at the first failure, naming the command and how to resume, and resumes there with --from', async () => {
    const failing = fakeGcloud([
      [/projects describe/, { stdout: '4242' }],
      [/storage service-agent/, { stdout: 'agent@example.test' }],
      [/iam service-accounts create hermetic-events/, { code: 1, stderr: 'ERROR: PERMISSION_DENIED: caller lacks iam.serviceAccounts.create' }],
    ]);
    const io = memoryIo();
    assert.equal(await deploy(['--project', place.project, '--region', place.region, '--zone', place.zone], io, fakeDeps(failing.exec)), 1);
    const number = plan.findIndex((command) => starts(command, 'gcloud', 'iam', 'service-accounts', 'create', 'hermetic-events')) + 1;
    assert.equal(failing.calls.length, number, 'nothing after the failure runs');
    const text = io.err.join('\n');
    assert.match(text, new RegExp(`command ${number} failed: gcloud iam service-accounts create hermetic-events`));
    assert.match(text, /PERMISSION_DENIED/);
    assert.match(text, new RegExp(`resume with: hermetic deploy --project ${place.project} --region ${place.region} --zone ${place.zone} --from ${number}`));

    const resumed = fakeGcloud([[/projects describe/, { stdout: '4242' }], [/describe|service-agent/, { stdout: 'x' }]]);
    assert.equal(await deploy(['--project', place.project, '--region', place.region, '--zone', place.zone, '--from', String(number)], memoryIo(), fakeDeps(resumed.exec)), 0);
    const lookups = plan.slice(0, number - 1).filter((command) => command.sets !== undefined);
    assert.ok(lookups.length >= 2);
    assert.deepEqual(resumed.calls.slice(0, lookups.length), lookups.map((command) => command.argv), 'look-ups before the resume point still run');
    assert.deepEqual(resumed.calls[lookups.length], plan[number - 1]?.argv);
  });

  it('teardown treats "not found" as done, and skips deleting workers when none are left', async () => {
    const gcloud = fakeGcloud([
      [/functions delete poll /, { code: 1, stderr: 'ERROR: (gcloud.functions.delete) NOT_FOUND: Resource \'projects/x/locations/y/functions/poll\' was not found' }],
      [/instances list/, { stdout: '' }],
      [/storage service-agent/, { stdout: 'agent@example.test' }],
    ]);
    const io = memoryIo();
    assert.equal(await teardown(['--project', place.project, '--region', place.region, '--zone', place.zone, '--yes'], io, fakeDeps(gcloud.exec)), 0);
    assert.ok(!gcloud.calls.some((argv) => argv.join(' ').includes('instances delete')));
    assert.equal(gcloud.calls.length, down.length - 1);
    assert.match(io.err.join('\n'), /App Engine cannot delete an application/);

    const workers = fakeGcloud([[/instances list/, { stdout: 'hermetic-aaa\nhermetic-bbb\n' }], [/service-agent/, { stdout: 'a@b' }]]);
    assert.equal(await teardown(['--project', place.project, '--region', place.region, '--zone', place.zone, '--yes'], memoryIo(), fakeDeps(workers.exec)), 0);
    const remove = workers.calls.find((argv) => argv.join(' ').includes('instances delete'));
    assert.deepEqual(remove?.slice(4, 6), ['hermetic-aaa', 'hermetic-bbb']);
  });

  it('does not take a failure that mentions "already exists" as done unless the command creates', async () => {
    const gcloud = fakeGcloud([[/subscriptions update/, { code: 1, stderr: 'ERROR: something already exists elsewhere' }], [/describe|service-agent/, { stdout: 'x' }]]);
    const io = memoryIo();
    const code = await runPlan(plan, { exec: gcloud.exec, writeFile: async () => {}, cwd: '/nowhere', io, kind: 'deploy', from: 1, resume: 'hermetic deploy' });
    assert.equal(code, 1);
    assert.match(io.err.join('\n'), /subscriptions update/);
  });
});
