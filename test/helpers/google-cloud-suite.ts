import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Firestore } from '@google-cloud/firestore';
import { PubSub } from '@google-cloud/pubsub';
import { Storage } from '@google-cloud/storage';
import type Docker from 'dockerode';
import { triggers, type MessageFunctionName } from '../../shared/runtimes/google-cloud/functions.ts';
import { loadGoogleCloud } from '../../shared/runtimes/google-cloud/google-cloud.ts';
import { registerFunctions } from '../../functions/register.ts';
import { instanceName } from '../../shared/adapters/gcp/gce-instance.ts';
import { createPubsubPublisher } from '../../shared/adapters/gcp/pubsub-publisher.ts';
import { buildId, deploymentIdOfBucket } from '../../shared/core/model/ids.ts';
import { topics } from '../../shared/core/model/messages.ts';
import { blobKeys } from '../../shared/core/model/wire.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { publishMessage } from '../../shared/core/pipeline/publish.ts';
import { notifyResultLanded } from './bucket-notification.ts';
import { bootScriptGuest, startFakeGce, type BootScriptGuest, type FakeGce } from '../fakes/gce-server.ts';
import { createTestServiceAccount, startFakeGcs, type FakeGcs } from '../fakes/gcs-server.ts';
import { emulatorHost, emulatorMissing } from './emulators.ts';
import { serve } from './functions-server.ts';
import { startEventarcRelay } from './eventarc-relay.ts';
import { createTestRepo } from './git-repo.ts';
import { waitUntil } from './wait.ts';

const bucket = 'hermetic-e2e-blobs';
const missing = emulatorMissing('firestore') || emulatorMissing('pubsub') || (process.platform !== 'linux' ? 'the boot-script guest needs bash and /proc (Linux)' : false);

/** How the suite's VMs run their task, and how its messages are delivered. */
export interface GoogleCloudBuildOptions {
  /**
   * Boot each VM as a container of `image` on this Docker engine, its workers reaching the Storage fake at the
   * default bridge's `gateway`; without it, the boot script's `docker` is a stand-in that runs the agent as a process.
   */
  docker?: { engine: Docker; image: string; gateway: string };
  /** Hand every message to its function twice, the second as a redelivery. */
  twice?: boolean;
  /** Why the suite cannot run here, beyond the emulators. */
  skip?: string | false;
}

interface BuildJson {
  build: { status: string; reason?: string };
  cost: { usd: number; local: boolean };
  tasks: Array<{ id: string; status: string; machine?: { type: string; spot: boolean } }>;
}

/**
 * A whole build on the Google adapters, as deployed: the functions through functions-framework's server, over the
 * Firestore and Pub/Sub emulators (a relay plays Eventarc, a bucket notification on results/ plays Cloud Storage's),
 * the Cloud Storage fake, and the Compute Engine fake, whose VMs run the real COS boot script from exactly the
 * metadata the adapter wrote, which runs the real agent. One suite per test file: functions-framework keeps one
 * registry of functions per process.
 */
export function googleCloudBuildSuite(name: string, options: GoogleCloudBuildOptions): void {
  describe(`a build on Google Cloud adapters, end to end: ${name}`, { skip: missing || (options.skip ?? false), timeout: 300_000 }, () => {
    const project = `hermetic-e2e-${process.pid}`;
    let dir: string;
    let gcs: FakeGcs;
    let gce: FakeGce;
    let boot: BootScriptGuest;
    let pubsub: PubSub;
    let firestore: Firestore;
    let relay: Awaited<ReturnType<typeof startEventarcRelay>>;
    const servers: Server[] = [];
    let dashboard: string;
    const commits: Record<string, string> = {};
    const imageRepo = `us-central1-docker.pkg.dev/${project}/hermetic`;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'hermetic-gcp-e2e-'));
      const repo = await createTestRepo(join(dir, 'calc'));
      commits['good'] = await repo.commit({ 'check.sh': '#!/bin/sh\necho "checking on $GO_BUILDER_NAME"\n' }, 'check: pass', { executable: ['check.sh'] });
      commits['bad'] = await repo.commit({ 'check.sh': '#!/bin/sh\necho "broken"\nexit 3\n' }, 'check: fail', { executable: ['check.sh'] });
      const configFile = join(dir, 'hermetic.config.json');
      await writeFile(
        configFile,
        JSON.stringify({
          repos: [{ name: 'calc', url: repo.path, branches: ['main'], builders: ['sh'] }],
          builders: { sh: { type: 'command', command: './check.sh', hostType: 'linux-amd64', timeoutSeconds: 120 } },
        }),
      );

      const [firestoreHost, pubsubHost] = await Promise.all([emulatorHost('firestore'), emulatorHost('pubsub')]);
      firestore = new Firestore({ projectId: project, host: firestoreHost, ssl: false, ignoreUndefinedProperties: true });
      pubsub = new PubSub({ projectId: project, apiEndpoint: pubsubHost, emulatorMode: true });
      for (const topic of new Set(Object.values(triggers))) await pubsub.topic(topic).get({ autoCreate: true });

      // Cloud Storage's bucket notification: an object finalized under results/ is published to result-landed.
      const notify = createPubsubPublisher({ pubsub });
      const account = createTestServiceAccount();
      gcs = await startFakeGcs({
        buckets: [bucket],
        ...(options.docker === undefined ? {} : { host: options.docker.gateway }),
        serviceAccount: account,
        onFinalized: (object) => notifyResultLanded(notify, object),
      });
      boot = await bootScriptGuest(options.docker === undefined ? {} : { docker: 'engine' });
      // The image as deploy pushes it: the VM's `docker run` finds it here under its registry name.
      if (options.docker !== undefined) await options.docker.engine.getImage(options.docker.image).tag({ repo: `${imageRepo}/linux-amd64`, tag: 'e2e' });
      gce = await startFakeGce({ guest: boot.guest });

      const env = {
        HERMETIC_PROJECT: project,
        HERMETIC_REGION: 'us-central1',
        HERMETIC_ZONE: 'us-central1-a',
        HERMETIC_BUCKET: bucket,
        HERMETIC_DASHBOARD_URL: 'https://hermetic-e2e.appspot.com',
        HERMETIC_IMAGE_REPO: imageRepo,
        HERMETIC_WORKER_SA: `hermetic-worker@${project}.iam.gserviceaccount.com`,
        HERMETIC_CONFIG: configFile,
        HERMETIC_IMAGES: 'linux-amd64:e2e',
      };
      const storage = new Storage({ apiEndpoint: gcs.url, projectId: project, credentials: account.credentials });
      registerFunctions(() => loadGoogleCloud(env, { clients: { firestore, pubsub, storage, compute: gce.clientOptions }, logger: silentLogger }));

      const routes = [];
      for (const name of Object.keys(triggers) as MessageFunctionName[]) {
        const { url, server } = await serve(name);
        servers.push(server);
        routes.push({ topic: triggers[name], url: `${url}/` });
      }
      const { url, server } = await serve('dashboard');
      servers.push(server);
      dashboard = url;
      relay = await startEventarcRelay({ pubsub, project, routes, twice: options.twice === true });
    });

    after(async () => {
      await relay?.stop();
      for (const server of servers) await new Promise((resolve) => server.close(resolve));
      await gce?.close();
      await boot?.cleanup();
      await gcs?.close();
      await options.docker?.engine.getImage(`${imageRepo}/linux-amd64:e2e`).remove().catch(() => undefined);
      await pubsub?.close();
      await firestore?.terminate();
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });

    async function buildOf(id: string): Promise<BuildJson | undefined> {
      const response = await fetch(`${dashboard}/api/builds/${id}`);
      return response.status === 200 ? ((await response.json()) as BuildJson) : undefined;
    }

    async function waitForVerdict(id: string, ms: number): Promise<BuildJson> {
      const deadline = Date.now() + ms;
      for (;;) {
        const build = await buildOf(id);
        if (build !== undefined && !['queued', 'running'].includes(build.build.status)) return build;
        if (Date.now() > deadline) {
          const boots = [...boot.records].map(([vm, record]) => `${vm}:\n${record.log.slice(-2000)}`).join('\n');
          throw new Error(`build ${id} is still ${build?.build.status ?? 'unknown'}; relay failures: ${relay.failures.join('; ')}; boot logs:\n${boots}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }

    it('polls, plans, launches a VM per task, collects the result and reports, as Google Cloud would run it', async () => {
      await publishMessage(createPubsubPublisher({ pubsub }), topics.pollTick, { v: 1 });
      const good = buildId('calc', commits['good'] ?? '', 'sh');
      const bad = buildId('calc', commits['bad'] ?? '', 'sh');
      const [passed, failed] = await Promise.all([waitForVerdict(good, 180_000), waitForVerdict(bad, 180_000)]);
      assert.equal(passed.build.status, 'passed', passed.build.reason);
      assert.equal(failed.build.status, 'failed');
      assert.match(failed.build.reason ?? '', /exited 3/);

      for (const build of [passed, failed]) {
        const [task] = build.tasks;
        assert.ok(task);
        // The VM's machine, from infra/deploy/machines.json, priced on the build.
        assert.deepEqual(task.machine, { type: 'e2-standard-2', spot: true, diskGb: 50, diskType: 'pd-balanced' });
        assert.ok(build.cost.usd > 0 && !build.cost.local, 'a worker on Compute Engine costs something');
        // The VM ran the real boot script, whose spec came from the metadata server.
        // The guest's record is written once its script ends, which may be just after the verdict (collect deletes
        // the VM, ending the script): wait for it rather than race it.
        const vm = instanceName(deploymentIdOfBucket(bucket), task.id);
        const record = await waitUntil(() => boot.records.get(vm), `the task ran on a VM of its own, ${vm}`, {
          detail: () => `VMs booted: ${gce.vms().map((vm) => vm.name).join(', ')}`,
        });
        assert.ok(record.metadataRequests.includes('hermetic-task'), 'the boot script read its spec from metadata');
        const run = record.calls.find((call) => call[0] === 'docker' && call[1] === 'run');
        assert.ok(run?.includes(`${imageRepo}/linux-amd64:e2e`), 'it ran the builder image deploy pushed');
        // The log and the result are in the bucket; the worker's log says what the step printed.
        assert.ok(gcs.object(bucket, blobKeys.result(task.id)));
        const log = await (await fetch(`${dashboard}/log/${task.id}`)).text();
        assert.match(log, build === passed ? /checking on sh/ : /broken/);
      }
      // One VM per task, each deleted by collect once its result was in (its boot script may not have reached poweroff).
      const deadline = Date.now() + 30_000;
      while (gce.vms().some((vm) => vm.ended === undefined) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(gce.inserts.length, 2, 'one VM per task');
      assert.deepEqual(gce.vms().filter((vm) => vm.ended === undefined).map((vm) => vm.name), [], 'no VM outlives its task');
      const letters = (await (await fetch(`${dashboard}/api/dead-letters`)).json()) as { deadLetters: unknown[] };
      assert.deepEqual(letters.deadLetters, [], 'nothing was dead-lettered');
      assert.deepEqual(relay.failures, [], 'no function failed a delivery');
    });
  });
}
