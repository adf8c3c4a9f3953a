import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { PermanentError, RetryableError } from '../../shared/core/errors.ts';
import { createGceCompute, type GceComputeOptions } from '../../shared/adapters/gcp/gce-compute.ts';
import {
  cosStartupScript,
  instanceBody,
  instanceName,
  labelKeyPattern,
  labelValuePattern,
  qemuStartupScript,
  runDurationSeconds,
  sanitizeLabel,
  shellQuote,
  specMetadataUrl,
  type GceHostType,
  type GceInstance,
} from '../../shared/adapters/gcp/gce-instance.ts';
import { blobKeys, type TaskSpec } from '../../shared/core/model/wire.ts';
import type { WorkerRequest } from '../../shared/ports/compute.ts';
import { newTaskId } from '../contract/compute.contract.ts';
import { bootScriptGuest, startFakeGce, type BootRecord, type FakeGce } from '../fakes/gce-server.ts';
import { startFakeBlobServer, taskSpecFor } from '../helpers/fake-blob-server.ts';
import { waitUntil } from '../helpers/wait.ts';

const zone = 'us-central1-a';
const project = 'hermetic-test';
const deployment = 'e2etest1';
const cos: GceHostType = {
  kind: 'cos-container',
  machineType: 'e2-standard-4',
  sourceImage: 'projects/cos-cloud/global/images/family/cos-stable',
  image: 'us-docker.pkg.dev/hermetic-test/builders/linux-amd64:abc',
};
const windows: GceHostType = {
  kind: 'windows',
  machineType: 'n2-standard-4',
  sourceImage: 'projects/hermetic-test/global/images/family/hermetic-windows',
  spot: true,
  diskGb: 100,
};
const qemu: GceHostType = {
  kind: 'qemu',
  machineType: 'n2-standard-8',
  sourceImage: 'projects/hermetic-test/global/images/family/hermetic-qemu-host',
  guest: { image: '/opt/hermetic/guest/guest.qcow2', kernel: '/opt/hermetic/guest/vmlinuz', initrd: '/opt/hermetic/guest/initrd.img', system: 'x86_64', cpus: 4, memoryMb: 8192 },
};

function spec(taskId: string): TaskSpec {
  const url = 'https://storage.example/x?X-Goog-Signature=abc';
  return {
    v: 1,
    taskId,
    builder: 'linux-amd64',
    attempt: 1,
    steps: [{ name: 'make', argv: ['./make.bash'] }],
    env: {},
    deadline: 0,
    source: { url },
    unpack: { maxBytes: 1 << 30, maxEntries: 100_000 },
    log: { chunkUrls: [url], chunkBytes: 1024 },
    result: { url },
  };
}

function request(overrides: Partial<WorkerRequest> = {}): WorkerRequest {
  const taskId = overrides.taskId ?? newTaskId();
  return {
    taskId,
    hostType: 'linux-amd64',
    spec: spec(taskId),
    deadline: 1_000_000 + 3_600_000,
    labels: { task: taskId, build: 'b1', builder: 'linux-amd64', repo: 'github.com/Golang/go' },
    ...overrides,
  };
}

const metadata = (body: GceInstance) => Object.fromEntries((body.metadata?.items ?? []).map((item) => [item.key, item.value]));

describe('Compute Engine instance body', () => {
  test('names the VM after the task, in the zone, with the spec, deadline and exact labels in metadata', () => {
    const asked = request();
    const body = instanceBody(asked, { deployment, zone, hostType: cos, now: 1_000_000 });
    assert.equal(body.name, `hermetic-${deployment}-${asked.taskId}`);
    assert.equal(body.machineType, `zones/${zone}/machineTypes/e2-standard-4`);
    const items = metadata(body);
    assert.deepEqual(JSON.parse(items['hermetic-task'] ?? ''), asked.spec);
    assert.equal(items['hermetic-deadline'], String(asked.deadline));
    assert.deepEqual(JSON.parse(items['hermetic-labels'] ?? ''), asked.labels);
    assert.equal(items['block-project-ssh-keys'], 'true');
    assert.equal(body.disks?.[0]?.initializeParams?.sourceImage, cos.sourceImage);
    assert.equal(body.disks?.[0]?.autoDelete, true);
    assert.throws(() => instanceName(deployment, 'Not_A_Task'), /no valid instance name/);
    assert.throws(() => instanceName('Not-An-ID', asked.taskId), /no valid instance name/);
  });

  test('labels follow the rules, carry the task and deadline, and refuse the adapter keys and collisions', () => {
    const asked = request({ labels: { repo: 'github.com/Golang/go', 'Build.ID': 'x'.repeat(80), '1st': 'ok' } });
    const labels = instanceBody(asked, { deployment, zone, hostType: cos, now: 0 }).labels ?? {};
    assert.deepEqual(labels, {
      repo: 'github_com_golang_go',
      build_id: 'x'.repeat(63),
      l1st: 'ok',
      'hermetic-task': asked.taskId,
      'hermetic-deadline': String(asked.deadline),
      'hermetic-deployment': deployment,
    });
    for (const [key, value] of Object.entries(labels)) {
      assert.match(key, labelKeyPattern);
      assert.match(value, labelValuePattern);
    }
    assert.equal(sanitizeLabel('Ünïcode Key', 'key'), 'l_n_code_key');
    assert.throws(() => instanceBody(request({ labels: { 'hermetic-task': 'x' } }), { deployment, zone, hostType: cos, now: 0 }), /adapter's own/);
    assert.throws(() => instanceBody(request({ labels: { 'a.b': '1', a_b: '2' } }), { deployment, zone, hostType: cos, now: 0 }), /collide/);
  });

  test('refuses a worker that would read a directory of the pipeline\'s machine (a file:// module proxy)', () => {
    assert.throws(() => instanceBody({ ...request(), readOnlyPaths: ['/srv/go-mirror'] }, { deployment, zone, hostType: cos, now: 0 }), /reads \/srv\/go-mirror from the machine that runs the pipeline .*use an http\(s\) proxy/);
  });

  test('no service account, a run-time limit from the deadline that deletes the VM, no automatic restart', () => {
    const body = instanceBody(request({ deadline: 1_000_000 + 90_500 }), { deployment, zone, hostType: cos, now: 1_000_000 });
    assert.equal('serviceAccounts' in body, false, 'no service account at all: the metadata server has no token');
    assert.deepEqual(body.scheduling, {
      provisioningModel: 'STANDARD',
      automaticRestart: false,
      maxRunDuration: { seconds: '91' },
      instanceTerminationAction: 'DELETE',
    });
    const withAccount = instanceBody(request(), { deployment, zone, hostType: cos, now: 0, serviceAccount: 'hermetic-worker@hermetic-test.iam.gserviceaccount.com' });
    assert.deepEqual(withAccount.serviceAccounts, [{ email: 'hermetic-worker@hermetic-test.iam.gserviceaccount.com', scopes: [] }], 'a given account gets no scopes');
    assert.equal(runDurationSeconds(1000, 0), 30, "Compute Engine's floor");
    assert.equal(runDurationSeconds(1e15, 0), 120 * 24 * 3600, "and its ceiling");
  });

  test('Spot when the host type allows it, with what Spot requires', () => {
    const body = instanceBody(request(), { deployment, zone, hostType: { ...cos, spot: true }, now: 0 });
    assert.equal(body.scheduling?.provisioningModel, 'SPOT');
    assert.equal(body.scheduling?.onHostMaintenance, 'TERMINATE');
    assert.equal(body.scheduling?.automaticRestart, false);
    assert.equal(body.scheduling?.instanceTerminationAction, 'DELETE');
    const refused = instanceBody({ ...request(), spot: false }, { deployment, zone, hostType: { ...cos, spot: true }, now: 0 });
    assert.equal(refused.scheduling?.provisioningModel, 'STANDARD', 'a builder that would rather not be preempted gets a standard VM');
  });

  test('the network: an external IP by default, none when asked, a subnetwork and tags', () => {
    const byDefault = instanceBody(request(), { deployment, zone, hostType: cos, now: 0 });
    assert.deepEqual(byDefault.networkInterfaces, [{ network: 'global/networks/default', accessConfigs: [{ name: 'external-nat', type: 'ONE_TO_ONE_NAT' }] }]);
    const custom = instanceBody(request(), {
      deployment,
      zone,
      hostType: cos,
      now: 0,
      network: { network: 'global/networks/builders', subnetwork: 'regions/us-central1/subnetworks/workers', externalIp: false, tags: ['hermetic-worker'] },
    });
    assert.deepEqual(custom.networkInterfaces, [{ network: 'global/networks/builders', subnetwork: 'regions/us-central1/subnetworks/workers', accessConfigs: [] }]);
    assert.deepEqual(custom.tags, { items: ['hermetic-worker'] });
  });

  test('refuses a spec too big for instance metadata', () => {
    const asked = request();
    asked.spec.log.chunkUrls = Array.from({ length: 300 }, (_, index) => `https://storage.example/${index}?${'s'.repeat(1000)}`);
    assert.throws(() => instanceBody(asked, { deployment, zone, hostType: cos, now: 0 }), /at most 262144/);
  });

  test('COS: a boot script that fetches the spec, cuts containers off the metadata server, runs the image, powers off', () => {
    const plain = metadata(instanceBody(request(), { deployment, zone, hostType: cos, now: 0 }))['startup-script'] ?? '';
    const networked = metadata(instanceBody(request({ network: true }), { deployment, zone, hostType: cos, now: 0 }))['startup-script'] ?? '';
    for (const script of [plain, networked]) {
      assert.equal(spawnSync('bash', ['-n'], { input: script }).status, 0, 'bash parses it');
      assert.ok(script.includes(`-H 'Metadata-Flavor: Google'`) && script.includes(shellQuote(specMetadataUrl)));
      assert.ok(script.includes('--mount "type=bind,source=$spec,target=/etc/hermetic/task.json,readonly"'));
      assert.ok(script.includes('--cap-drop ALL --cap-add SYS_ADMIN'));
      assert.ok(script.includes(`image=${shellQuote(cos.kind === 'cos-container' ? cos.image : '')}`));
      assert.match(script, /iptables -I DOCKER-USER 1 -d 169\.254\.169\.254\/32 -j DROP/);
      assert.match(script, /\npoweroff|; poweroff;/);
      assert.match(script, /already ran its task/);
    }
    assert.ok(!plain.includes('--step-network'));
    assert.ok(networked.includes('"$image" --step-network'));
    assert.equal(shellQuote("it's"), `'it'\\''s'`);
    assert.ok(cosStartupScript("a'b", { stepNetwork: false }).includes(`image='a'\\''b'`));
  });

  test('Windows: a PowerShell startup script that fetches the spec and runs the agent with Node, then shuts down', () => {
    const body = instanceBody(request(), { deployment, zone, hostType: windows, now: 0 });
    const items = metadata(body);
    assert.equal(items['startup-script'], undefined);
    const script = items['windows-startup-script-ps1'] ?? '';
    assert.ok(script.includes(`-Headers @{ 'Metadata-Flavor' = 'Google' }`) && script.includes(`-Uri '${specMetadataUrl}'`));
    assert.ok(script.includes(`& 'C:\\hermetic\\node\\node.exe' 'C:\\hermetic\\app\\shared\\agent\\main.ts' --workdir 'C:\\hermetic\\work' --spec $spec`));
    assert.ok(script.indexOf('New-NetFirewallRule') > script.indexOf('Invoke-WebRequest'), 'the metadata server is blocked after the spec is read');
    assert.ok(script.indexOf('New-NetFirewallRule') < script.indexOf('--spec $spec'), 'and before the agent runs');
    assert.match(script, /trap \{ Stop-Worker/);
    assert.match(script, /Stop-Worker 'task done'\n$/);
    assert.equal(body.scheduling?.provisioningModel, 'SPOT');
    assert.equal(body.disks?.[0]?.initializeParams?.diskSizeGb, '100');
    assert.equal(body.advancedMachineFeatures, undefined);
  });

  test('qemu: nested virtualization, and a host script that boots the guest with the spec over fw_cfg', () => {
    const body = instanceBody(request({ network: true }), { deployment, zone, hostType: qemu, now: 0 });
    assert.deepEqual(body.advancedMachineFeatures, { enableNestedVirtualization: true });
    const script = metadata(body)['startup-script'] ?? '';
    assert.equal(spawnSync('bash', ['-n'], { input: script }).status, 0, 'bash parses it');
    assert.ok(script.includes("qemu-img create -q -f qcow2 -F qcow2 -b '/opt/hermetic/guest/guest.qcow2'"));
    assert.ok(script.includes('qemu-system-x86_64 -machine q35 $accel -smp 4 -m 8192'));
    assert.ok(script.includes('-fw_cfg "name=opt/hermetic/task.json,file=$spec"'));
    assert.ok(script.includes('-fw_cfg "name=opt/hermetic/args,string=--step-network"'));
    assert.ok(script.includes('-no-reboot'));
    assert.match(script, /--uid-owner hermetic-qemu -d 169\.254\.169\.254\/32 -j REJECT/);
    assert.ok(script.includes("-kernel '/opt/hermetic/guest/vmlinuz' -initrd '/opt/hermetic/guest/initrd.img' -append 'root=/dev/vda rw console=ttyS0 quiet'"));
    const arm = qemuStartupScript({ image: '/g.qcow2', kernel: '/k', initrd: '/i', system: 'aarch64' }, { stepNetwork: false });
    assert.ok(arm.includes('qemu-system-aarch64 -machine virt $accel -smp 2 -m 4096 \\'));
    assert.ok(arm.includes('console=ttyAMA0'));
    assert.ok(!arm.includes('opt/hermetic/args'), 'qemu refuses an empty fw_cfg string: no args, no file');
  });
});

describe('Compute Engine adapter on the fake API', () => {
  async function setup(overrides: Partial<GceComputeOptions> = {}, fakeOptions: Parameters<typeof startFakeGce>[0] = {}) {
    const gce = await startFakeGce(fakeOptions);
    const compute = createGceCompute({ deployment, project, zone, hostTypes: new Map([['linux-amd64', cos]]), clientOptions: gce.clientOptions, ...overrides });
    return { gce, compute, close: () => gce.close() };
  }
  const vmOf = (gce: FakeGce, taskId: string) => gce.vm(instanceName(deployment, taskId));

  test('imports the client library only when first used, and once', async () => {
    let loads = 0;
    const { gce, compute, close } = await setup({
      loadClient: () => {
        loads++;
        return import('@google-cloud/compute');
      },
    });
    try {
      assert.equal(loads, 0);
      await assert.rejects(compute.start({ ...request(), hostType: 'windows-amd64' }), /windows-amd64/);
      assert.equal(loads, 0, 'a refused host type needs no client');
      await Promise.all([compute.list(), compute.list(), compute.start(request())]);
      await compute.stop(newTaskId());
      assert.equal(loads, 1);
      assert.equal(gce.vms().length, 1);
    } finally {
      await close();
    }
  });

  test('the body survives the real client: what the fake receives is what the adapter made', async () => {
    const { gce, compute, close } = await setup({ now: () => 1_000_000 });
    try {
      const asked = request({ labels: { build: 'b1', repo: 'github.com/golang/go' } });
      await compute.start(asked);
      const made = instanceBody(asked, { deployment, zone, hostType: cos, now: 1_000_000 });
      const received = gce.inserts[0] as GceInstance;
      assert.deepEqual(received.metadata, made.metadata);
      assert.deepEqual(received.labels, made.labels);
      assert.deepEqual(received.scheduling, made.scheduling);
      const [disk] = received.disks ?? [];
      assert.deepEqual(
        { boot: disk?.boot, autoDelete: disk?.autoDelete, sourceImage: disk?.initializeParams?.sourceImage, diskSizeGb: disk?.initializeParams?.diskSizeGb, diskType: disk?.initializeParams?.diskType },
        { boot: true, autoDelete: true, sourceImage: cos.sourceImage, diskSizeGb: '50', diskType: `zones/${zone}/diskTypes/pd-balanced` },
      );
      assert.equal(received.name, made.name);
      assert.equal('serviceAccounts' in received, false);
      assert.equal(vmOf(gce, asked.taskId)?.status, 'RUNNING', 'start waited for the VM to be created');
      assert.deepEqual(compute.machineOf?.('linux-amd64', true), { type: 'e2-standard-4', spot: false, diskGb: 50, diskType: 'pd-balanced' });
      assert.equal(compute.machineOf?.('windows-amd64', true), undefined);
    } finally {
      await close();
    }
  });

  test('a service account, when given, reaches Compute Engine with no scopes', async () => {
    const email = 'hermetic-worker@hermetic-test.iam.gserviceaccount.com';
    const { gce, compute, close } = await setup({ serviceAccount: email });
    try {
      await compute.start(request());
      const received = gce.inserts[0] as GceInstance;
      assert.deepEqual(received.serviceAccounts?.map((account) => ({ email: account.email, scopes: account.scopes ?? [] })), [{ email, scopes: [] }]);
    } finally {
      await close();
    }
  });

  test('a VM the task already has is success: by request ID, and by name (alreadyExists)', async () => {
    for (const honourRequestIds of [true, false]) {
      const { gce, compute, close } = await setup({}, { honourRequestIds });
      try {
        const asked = request();
        await compute.start(asked);
        // Another process (a redelivered launch) knows nothing of the first start.
        const other = createGceCompute({ deployment, project, zone, hostTypes: new Map([['linux-amd64', cos]]), clientOptions: gce.clientOptions });
        await other.start(asked);
        assert.equal(gce.inserts.length, 2);
        assert.equal(gce.vms().length, 1, 'a task never gets a second VM');
      } finally {
        await close();
      }
    }
  });

  test('two deployments in one project each get a VM for the same task, and list and stop only their own', async () => {
    const { gce, compute, close } = await setup();
    try {
      const asked = request();
      const other = createGceCompute({ deployment: 'other2', project, zone, hostTypes: new Map([['linux-amd64', cos]]), clientOptions: gce.clientOptions });
      await compute.start(asked);
      await other.start(asked);
      assert.deepEqual(gce.vms().map((vm) => vm.name).sort(), [instanceName(deployment, asked.taskId), instanceName('other2', asked.taskId)].sort());
      assert.deepEqual((await other.list()).map((worker) => worker.taskId), [asked.taskId]);
      await other.stop(asked.taskId);
      assert.deepEqual((await compute.list()).map((worker) => worker.taskId), [asked.taskId], 'the other deployment stopped only its own VM');
      assert.deepEqual(await other.list(), []);
    } finally {
      await close();
    }
  });

  test('a creation that fails for capacity is retryable and leaves the task free to start again', async () => {
    const { gce, compute, close } = await setup();
    try {
      const asked = request();
      gce.failNextInsert('ZONE_RESOURCE_POOL_EXHAUSTED', 503);
      const error = await compute.start(asked).then(() => undefined, (thrown: unknown) => thrown);
      assert.ok(error instanceof RetryableError, String(error));
      assert.match(error.message, /ZONE_RESOURCE_POOL_EXHAUSTED/);
      assert.equal(vmOf(gce, asked.taskId), undefined);
      await compute.start(asked);
      assert.equal(vmOf(gce, asked.taskId)?.status, 'RUNNING');
    } finally {
      await close();
    }
  });

  test('a creation Compute Engine refuses for good is permanent: a failed operation, or a body it rejects', async () => {
    const { gce, compute, close } = await setup({ hostTypes: new Map([['linux-amd64', cos], ['bad', { ...cos, machineType: 'E2 Standard' }]]) });
    try {
      gce.failNextInsert('RESOURCE_NOT_FOUND', 404);
      const failed = await compute.start(request()).then(() => undefined, (thrown: unknown) => thrown);
      assert.ok(failed instanceof PermanentError, String(failed));
      const rejected = await compute.start(request({ hostType: 'bad' })).then(() => undefined, (thrown: unknown) => thrown);
      assert.ok(rejected instanceof PermanentError, String(rejected));
      assert.match(rejected.message, /machineType/);
      assert.ok(rejected.cause !== undefined, 'the client error is kept');
      assert.equal(gce.vms().length, 0);
    } finally {
      await close();
    }
  });

  test('list: running VMs with their deadline and exact labels; powered-off ones are not listed, and deleted', async () => {
    const { gce, compute, close } = await setup();
    try {
      const a = request({ labels: { repo: 'github.com/Golang/go' } });
      const b = request();
      await compute.start(a);
      await compute.start(b);
      assert.deepEqual(
        (await compute.list()).find((worker) => worker.taskId === a.taskId),
        { taskId: a.taskId, deadline: a.deadline, labels: { repo: 'github.com/Golang/go' } },
      );
      gce.powerOff(instanceName(deployment, b.taskId));
      await waitUntil(() => vmOf(gce, b.taskId)?.status === 'TERMINATED', 'b\'s VM is stopped', { everyMs: 20 });
      assert.deepEqual((await compute.list()).map((worker) => worker.taskId), [a.taskId]);
      await waitUntil(() => vmOf(gce, b.taskId) === undefined, 'b\'s VM is gone', { everyMs: 20 });
      // A VM without the task label is not the adapter's.
      const { InstancesClient } = await import('@google-cloud/compute');
      const client = new InstancesClient(gce.clientOptions);
      await client.insert({ project, zone, instanceResource: { ...instanceBody(request(), { deployment, zone, hostType: cos, now: 0 }), name: 'someone-else', labels: {} } });
      await waitUntil(() => gce.vm('someone-else')?.status === 'RUNNING', 'the other VM runs', { everyMs: 20 });
      assert.deepEqual((await compute.list()).map((worker) => worker.taskId), [a.taskId]);
    } finally {
      await close();
    }
  });

  test('stop deletes the VM and does not wait; an unknown task is a no-op; close deletes nothing', async () => {
    const { gce, compute, close } = await setup();
    try {
      const a = request();
      const b = request();
      await compute.start(a);
      await compute.start(b);
      await compute.stop(a.taskId);
      assert.equal(vmOf(gce, a.taskId)?.status, 'STOPPING');
      await waitUntil(() => vmOf(gce, a.taskId) === undefined, 'a\'s VM is gone', { everyMs: 20 });
      assert.equal(gce.vms().length, 1);
      await compute.stop(a.taskId);
      await compute.close();
      await assert.rejects(compute.start(request()), /closed/);
      assert.equal(vmOf(gce, b.taskId)?.status, 'RUNNING', 'close left the VM to collect and the reaper');
    } finally {
      await close();
    }
  });
});

/** What one task's COS boot script did in the fake guest. */
interface CosBoot {
  record: BootRecord;
  spec: TaskSpec;
  taskId: string;
  name: string;
  gce: FakeGce;
}

/**
 * Starts one task (`extra` over a network request) on a fake Compute Engine whose VMs run the COS boot script in the
 * fake guest, against a fake blob server; waits for the script to end and hands `check` what it did.
 */
async function bootOnFake(extra: Partial<WorkerRequest>, check: (boot: CosBoot) => Promise<void>): Promise<void> {
  const blobs = await startFakeBlobServer();
  const boot = await bootScriptGuest();
  const gce = await startFakeGce({ guest: boot.guest });
  const compute = createGceCompute({ deployment, project, zone, hostTypes: new Map([['linux-amd64', cos]]), clientOptions: gce.clientOptions });
  try {
    const taskId = newTaskId();
    const spec = taskSpecFor(blobs, taskId, { steps: [['true']] });
    await compute.start({ ...request({ taskId, network: true }), spec, ...extra });
    const name = instanceName(deployment, taskId);
    // Generous: the agent starts slowly on a loaded machine.
    await waitUntil(() => boot.records.has(name), 'the boot script ends', { everyMs: 20, detail: () => `VM ${gce.vm(name)?.status ?? 'gone'}` });
    const record = boot.records.get(name);
    assert.ok(record?.poweredOff, record?.log);
    assert.ok(blobs.objects.has(blobKeys.result(taskId)), `the agent uploaded the result: ${record.log}`);
    await check({ record, spec, taskId, name, gce });
  } finally {
    await compute.close();
    await gce.close();
    await boot.cleanup();
    await blobs.close();
  }
}

describe('the COS boot script, run by the fake', { skip: process.platform === 'linux' ? false : 'needs bash and /proc (Linux)' }, () => {
  test('reads the spec from the metadata server, runs the image with the spec mounted, and powers off', async () => {
    await bootOnFake({}, async ({ record, name, gce }) => {
      assert.deepEqual(record.metadataRequests, ['hermetic-task']);
      assert.match(record.log, /agent exited with code 0/);
      assert.deepEqual(record.calls[0], ['systemctl', 'start', 'docker']);
      const rules = record.calls.filter((call) => call[0] === 'iptables');
      assert.equal(rules.length, 3);
      assert.ok(rules.every((call) => call.includes('DOCKER-USER') && call.includes('169.254.169.254/32')));
      const run = record.calls.find((call) => call[0] === 'docker' && call[1] === 'run') ?? [];
      assert.equal(run.at(-2), cos.kind === 'cos-container' ? cos.image : '');
      assert.equal(run.at(-1), '--step-network');
      assert.ok(run.includes('no-new-privileges'));
      assert.deepEqual(run.slice(run.indexOf('--cap-drop'), run.indexOf('--cap-drop') + 2), ['--cap-drop', 'ALL']);
      await waitUntil(() => gce.vm(name)?.status === 'TERMINATED', 'the VM is stopped', { everyMs: 20 });
      assert.equal(gce.vm(name)?.ended, 'powered-off');
    });
  });

  test('held to its egress, lets the containers reach only the hosts asked for and the signed URLs\' host, and DNS', async () => {
    await bootOnFake({ egress: [{ host: 'localhost', port: 8443 }] }, async ({ record, spec }) => {
      const egress = record.calls.filter((call) => call[0] === 'iptables' && call.includes('HERMETIC-EGRESS')).map((call) => call.slice(1).join(' '));
      const blobPort = new URL(spec.result.url).port;
      assert.deepEqual(egress, [
        '-N HERMETIC-EGRESS',
        '-A HERMETIC-EGRESS -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN',
        '-A HERMETIC-EGRESS -d 169.254.169.254/32 -p udp --dport 53 -j RETURN',
        '-A HERMETIC-EGRESS -d 169.254.169.254/32 -p tcp --dport 53 -j RETURN',
        '-A HERMETIC-EGRESS -d 127.0.0.1 -p tcp --dport 8443 -j RETURN',
        `-A HERMETIC-EGRESS -d 127.0.0.1 -p tcp --dport ${blobPort} -j RETURN`,
        '-A HERMETIC-EGRESS -j DROP',
        '-I DOCKER-USER 1 -i docker0 -j HERMETIC-EGRESS',
      ]);
      const run = record.calls.find((call) => call[0] === 'docker' && call[1] === 'run') ?? [];
      assert.equal(run.at(-1), '--step-network');
    });
  });

  test('a worker without the network, or with it whole, gets no egress rules', () => {
    const whole = instanceBody(request({ network: true }), { deployment, zone, hostType: cos, now: 0 });
    const offline = instanceBody({ ...request(), egress: [{ host: 'proxy.golang.org', port: 443 }] }, { deployment, zone, hostType: cos, now: 0 });
    for (const body of [whole, offline]) {
      const script = body.metadata?.items?.find((item) => item.key === 'startup-script')?.value ?? '';
      assert.ok(!String(script).includes('HERMETIC-EGRESS'));
    }
  });
});

test('importing the adapter loads no client; its loader loads the two clients it uses, not the whole package', () => {
  const adapter = JSON.stringify(fileURLToPath(new URL('../../shared/adapters/gcp/gce-compute.ts', import.meta.url)));
  const probe = (load: string) => {
    const loaded = `const { createRequire } = await import('node:module'); const paths = Object.keys(createRequire(import.meta.url).cache);`;
    const report = `console.log(JSON.stringify({ gax: paths.some((path) => path.includes('google-gax')), beta: paths.some((path) => path.includes('/v1beta/')) }));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', `${load}; ${loaded} ${report}`], { encoding: 'utf8', cwd: fileURLToPath(new URL('../..', import.meta.url)) });
    assert.equal(run.status, 0, run.stderr);
    return JSON.parse(run.stdout) as { gax: boolean; beta: boolean };
  };
  assert.deepEqual(probe(`await import(${adapter})`), { gax: false, beta: false });
  assert.deepEqual(
    probe(`const { loadComputeClients } = await import(${adapter}); const c = await loadComputeClients(); if (typeof c.InstancesClient !== 'function' || typeof c.ZoneOperationsClient !== 'function') throw new Error('no clients')`),
    { gax: true, beta: false },
  );
  assert.deepEqual(probe(`await import('@google-cloud/compute')`), { gax: true, beta: true }, 'the probe sees what the package index loads');
});
