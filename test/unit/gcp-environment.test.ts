import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Firestore } from '@google-cloud/firestore';
import { Storage } from '@google-cloud/storage';
import { loadGoogleCloud, loadGoogleCloudDashboard } from '../../shared/runtimes/google-cloud/google-cloud.ts';
import { createCloudLogger } from '../../shared/adapters/gcp/cloud-logger.ts';
import { gceHostTypes, loadMachines, seriesDiskTypes } from '../../shared/adapters/gcp/gce-host-types.ts';
import { listHostTypes } from '../../shared/images/host-types.ts';
import { readGoogleCloudEnvironment, requiredVariables } from '../../shared/adapters/gcp/environment.ts';
import { ConfigError } from '../../shared/core/errors.ts';
import { silentLogger } from '../../shared/ports/log.ts';

const complete = {
  HERMETIC_PROJECT: 'my-builds-1',
  HERMETIC_REGION: 'us-central1',
  HERMETIC_ZONE: 'us-central1-a',
  HERMETIC_BUCKET: 'my-builds-1-hermetic',
  HERMETIC_DASHBOARD_URL: 'https://my-builds-1.appspot.com',
  HERMETIC_IMAGE_REPO: 'us-central1-docker.pkg.dev/my-builds-1/hermetic',
  HERMETIC_WORKER_SA: 'hermetic-worker@my-builds-1.iam.gserviceaccount.com',
};

describe('the Google Cloud environment', () => {
  it('reads a complete environment, with defaults for the optional variables', () => {
    const read = readGoogleCloudEnvironment(complete);
    assert.equal(read.project, 'my-builds-1');
    assert.equal(read.zone, 'us-central1-a');
    assert.equal(read.configFile, 'hermetic.config.json');
    assert.equal(read.maxDeliveryAttempts, 5);
    assert.equal(readGoogleCloudEnvironment({ ...complete, HERMETIC_MAX_DELIVERY_ATTEMPTS: '10' }).maxDeliveryAttempts, 10);
  });

  it('fails fast, naming every missing and malformed variable at once', () => {
    const { HERMETIC_BUCKET: _bucket, HERMETIC_WORKER_SA: _worker, ...partial } = complete;
    assert.throws(
      () => readGoogleCloudEnvironment({ ...partial, HERMETIC_PROJECT: 'Bad_Project', HERMETIC_MAX_DELIVERY_ATTEMPTS: '2' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /HERMETIC_PROJECT="Bad_Project" is not the Google Cloud project ID/);
        assert.match(error.message, /HERMETIC_BUCKET is not set \(the blobs bucket name\)/);
        assert.match(error.message, /HERMETIC_WORKER_SA is not set/);
        assert.match(error.message, /HERMETIC_MAX_DELIVERY_ATTEMPTS="2" is not a whole number from 5 to 100/);
        assert.doesNotMatch(error.message, /HERMETIC_REGION/);
        return true;
      },
    );
  });

  it('refuses a zone outside the region', () => {
    assert.throws(() => readGoogleCloudEnvironment({ ...complete, HERMETIC_ZONE: 'europe-west1-b' }), /HERMETIC_ZONE=europe-west1-b is not in HERMETIC_REGION=us-central1/);
  });

  it('reads the pushed images, and refuses a malformed entry', () => {
    const read = readGoogleCloudEnvironment({ ...complete, HERMETIC_IMAGES: ' linux-amd64:97408d53c648  linux-386:0123abcd ' });
    assert.deepEqual([...read.images], [['linux-amd64', 'linux-amd64:97408d53c648'], ['linux-386', 'linux-386:0123abcd']]);
    assert.throws(() => readGoogleCloudEnvironment({ ...complete, HERMETIC_IMAGES: 'linux-amd64' }), /HERMETIC_IMAGES: "linux-amd64" is not HOSTTYPE:TAG/);
  });

  it('makes the composition root fail on its first use, before any client, naming what to set', async () => {
    await assert.rejects(loadGoogleCloud({}), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /HERMETIC_PROJECT is not set/);
      assert.match(error.message, /HERMETIC_WORKER_SA is not set/);
      return true;
    });
  });

  it('builds the dashboard without GitHub\'s credentials, which the functions cannot start without', async () => {
    // App Engine gets the functions' variables but no secret: a dashboard that read GitHub's would fail every request.
    const env = { ...complete, HERMETIC_GITHUB_AUTH: 'token' };
    await assert.rejects(loadGoogleCloud(env, { logger: silentLogger }), /GitHub access: GITHUB_TOKEN is not set/);
    const clients = { firestore: new Firestore({ projectId: complete.HERMETIC_PROJECT }), storage: new Storage({ projectId: complete.HERMETIC_PROJECT }) };
    try {
      assert.equal(typeof (await loadGoogleCloudDashboard(env, { clients, logger: silentLogger })), 'function');
    } finally {
      await clients.firestore.terminate();
    }
  });

  it('lists every variable deploy must set', () => {
    assert.deepEqual(requiredVariables.map((variable) => variable.name).sort(), Object.keys(complete).sort());
  });
});

describe('the Cloud Logging logger', () => {
  it('writes one JSON entry a line, with severity and message', () => {
    const lines: string[] = [];
    const logger = createCloudLogger({ write: (line) => lines.push(line) });
    logger.info('build.planned', { buildId: 'b1', tasks: 3 });
    logger.warn('landed.ignored', { object: 'x' });
    logger.error('message.dead-lettered', { reason: 'bad' });
    assert.deepEqual(
      lines.map((line) => JSON.parse(line) as unknown),
      [
        { severity: 'INFO', message: 'build.planned', buildId: 'b1', tasks: 3 },
        { severity: 'WARNING', message: 'landed.ignored', object: 'x' },
        { severity: 'ERROR', message: 'message.dead-lettered', reason: 'bad' },
      ],
    );
    assert.ok(lines.every((line) => line.endsWith('\n') && !line.slice(0, -1).includes('\n')));
  });
});

describe('host types on Compute Engine', () => {
  it('runs each shipped host type with a pushed image on Container-Optimized OS of its architecture', async () => {
    const types = gceHostTypes({
      hostTypes: await listHostTypes(),
      machines: await loadMachines(),
      images: new Map([
        ['linux-amd64', 'linux-amd64:aaa'],
        ['linux-arm64', 'linux-arm64:bbb'],
      ]),
      imageRepo: 'us-central1-docker.pkg.dev/p/hermetic',
    });
    assert.deepEqual([...types.keys()], ['linux-amd64', 'linux-arm64'], 'host types without a pushed image are left out');
    assert.deepEqual(types.get('linux-amd64'), {
      kind: 'cos-container',
      machineType: 'e2-standard-2',
      spot: true,
      diskType: 'pd-balanced',
      sourceImage: 'projects/cos-cloud/global/images/family/cos-stable',
      image: 'us-central1-docker.pkg.dev/p/hermetic/linux-amd64:aaa',
    });
    assert.equal(types.get('linux-arm64')?.sourceImage, 'projects/cos-cloud/global/images/family/cos-arm64-stable');
    assert.equal(types.get('linux-arm64')?.machineType, 't2a-standard-2');
  });

  it('runs a qemu host type as machines.json describes it: a host image that carries the guest', async () => {
    const guest = { image: '/opt/hermetic/guest/guest.qcow2', kernel: '/opt/hermetic/guest/vmlinuz', initrd: '/opt/hermetic/guest/initrd.img', system: 'x86_64' as const };
    const types = gceHostTypes({
      hostTypes: await listHostTypes(),
      machines: { 'linux-amd64-qemu': { kind: 'qemu', machineType: 'n2-standard-4', spot: false, sourceImage: 'projects/p/global/images/hermetic-qemu-host', guest } },
      images: new Map(),
      imageRepo: 'r',
    });
    assert.deepEqual(types.get('linux-amd64-qemu'), { kind: 'qemu', machineType: 'n2-standard-4', spot: false, sourceImage: 'projects/p/global/images/hermetic-qemu-host', guest });
  });

  it('refuses a machine or an image for a host type without a recipe', async () => {
    const hostTypes = await listHostTypes();
    assert.throws(
      () => gceHostTypes({ hostTypes, machines: { 'windows-amd64': { kind: 'cos-container', machineType: 'n2-standard-4', spot: false } }, images: new Map(), imageRepo: 'r' }),
      /machines.json: no host type windows-amd64; expected one of: linux-386/,
    );
    assert.throws(() => gceHostTypes({ hostTypes, machines: {}, images: new Map([['plan9', 'plan9:x']]), imageRepo: 'r' }), /HERMETIC_IMAGES: no host type plan9/);
  });

  it('gives every shipped host type a boot disk its machine series takes and the price table prices', async () => {
    for (const [name, machine] of Object.entries(await loadMachines())) {
      const series = machine.machineType.split('-')[0] ?? '';
      assert.ok(seriesDiskTypes[series]?.some((type) => type === (machine.diskType ?? 'pd-balanced')), `${name}: ${machine.machineType} with ${machine.diskType}`);
    }
  });

  it('refuses a boot disk type the machine series does not take, or the price table does not price', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-machines-'));
    try {
      const file = join(dir, 'machines.json');
      for (const [machine, pattern] of [
        [{ machineType: 'c3-standard-4', diskType: 'pd-standard' }, /diskType: c3 machines take pd-balanced, pd-ssd boot disks, not pd-standard/],
        [{ machineType: 'e2-standard-2', diskType: 'hyperdisk-balanced' }, /diskType: expected a disk type the price table prices \(pd-standard, pd-balanced, pd-ssd\), not hyperdisk-balanced/],
      ] as const) {
        await writeFile(file, JSON.stringify({ 'linux-amd64': machine }));
        await assert.rejects(loadMachines(file), pattern);
      }
      // Without a disk type it is pd-balanced, which c3 takes.
      await writeFile(file, JSON.stringify({ 'linux-amd64': { machineType: 'c3-standard-4' } }));
      assert.equal((await loadMachines(file))['linux-amd64']?.diskType, undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
