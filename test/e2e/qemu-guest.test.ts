import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { qemuStartupScript } from '../../shared/adapters/gcp/gce-instance.ts';
import { projectDir } from '../../shared/cli/catalog.ts';
import { defaultCacheDir } from '../../shared/images/build-images.ts';
import { buildQemuGuest, type QemuGuest } from '../../shared/images/qemu-guest.ts';
import { blobKeys, TaskResult } from '../../shared/core/model/wire.ts';
import { startFakeBlobServer, taskSpecFor, uploadedLog, type FakeBlobServer } from '../helpers/fake-blob-server.ts';

const tools = ['mmdebstrap', 'mke2fs', 'qemu-img', 'qemu-system-x86_64'];
const missingTools = tools.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
const skip =
  process.platform !== 'linux' || process.arch !== 'x64'
    ? 'the guest is amd64 and is built with Linux tools'
    : process.getuid?.() !== 0
      ? 'building the guest (mmdebstrap into a folder) needs root'
      : missingTools.length > 0
        ? `needs ${missingTools.join(', ')} (apt-get install mmdebstrap e2fsprogs qemu-utils qemu-system-x86; .ci/run installs them)`
        : false;

/** What a qemu host VM's boot script may not do on this machine: stand-ins that record or pass through. */
const shims: Record<string, string> = {
  iptables: 'exit 0',
  useradd: 'exit 0',
  id: 'exit 0',
  chown: 'exit 0',
  // setpriv --reuid U --regid G --init-groups -- CMD...: this machine has no hermetic-qemu user; run CMD as is.
  setpriv: 'while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done; shift; exec "$@"',
  poweroff: 'touch "$HERMETIC_TEST_STATE/powered-off"',
};

/**
 * The qemu host type for real: the guest built from Debian's packages, and the qemu host's boot script, as the
 * Compute Engine adapter writes it, booting it under qemu-system (TCG here) with the task over fw_cfg. The agent in
 * the guest fetches its source and uploads its log and result through signed URLs on this host (10.0.2.2 to the
 * guest), runs its steps as the builder user, and the guest powers off.
 */
describe('a qemu host type: the guest, booted by the host VM boot script', { skip, timeout: 1_200_000 }, () => {
  let guest: QemuGuest;
  let dir: string;
  let blobs: FakeBlobServer;
  let metadata: Server;
  const taskId = 'aa11bb22cc33dd44ee55ff66';

  before(async () => {
    guest = await buildQemuGuest({ projectDir, cacheDir: defaultCacheDir(), onProgress: (line) => process.stderr.write(`${line}\n`) });
    dir = await mkdtemp(join(tmpdir(), 'hermetic-qemu-'));
    blobs = await startFakeBlobServer();
    const spec = taskSpecFor(blobs, taskId, { steps: [['sh', '-c', 'echo "hello from $(uname -n) as uid $(id -u)"']] });
    // The guest reaches this host's loopback at 10.0.2.2, qemu's user-mode network gateway.
    const specJson = JSON.stringify(spec).replaceAll('http://127.0.0.1:', 'http://10.0.2.2:');
    metadata = createServer((req, res) => {
      const asked = req.url ?? '';
      if (req.headers['metadata-flavor'] === 'Google' && asked.endsWith('/computeMetadata/v1/instance/attributes/hermetic-task')) res.end(specJson);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => metadata.listen(0, '127.0.0.1', resolve));
  });

  after(async () => {
    metadata?.close();
    await blobs?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('runs the task in the guest and powers the host off', async () => {
    const state = join(dir, 'state');
    const bin = join(dir, 'bin');
    await mkdir(bin);
    for (const [name, body] of Object.entries(shims)) {
      await writeFile(join(bin, name), `#!/bin/sh\n${body}\n`);
      await chmod(join(bin, name), 0o755);
    }
    const script = qemuStartupScript({ image: guest.image, kernel: guest.kernel, initrd: guest.initrd, system: 'x86_64', memoryMb: 1024 }, { stepNetwork: false });
    assert.ok(script.includes('state=/var/lib/hermetic\n'));
    await writeFile(join(dir, 'boot.sh'), script.replace('state=/var/lib/hermetic\n', `state=${state}\n`));
    const port = (metadata.address() as AddressInfo).port;
    const started = Date.now();
    const boot = spawn('bash', [join(dir, 'boot.sh')], {
      env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}`, http_proxy: `http://127.0.0.1:${port}`, HERMETIC_TEST_STATE: state },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    boot.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    boot.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => boot.on('close', resolve));
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    process.stderr.write(`qemu host boot script: ${seconds} s from boot to power-off\n`);
    assert.equal(code, 0, output.slice(-4000));

    const resultBody = blobs.objects.get(blobKeys.result(taskId));
    assert.ok(resultBody, `the guest uploaded no result; boot output:\n${output.slice(-4000)}`);
    const result = TaskResult.parse(JSON.parse(resultBody.toString()));
    assert.equal(result.status, 'passed');
    assert.match(uploadedLog(blobs, taskId), /hello from hermetic-guest as uid 1000/, 'the step ran in the guest, as the builder user');
    assert.match(output, /guest exited with code 0/);
    await readFile(join(state, 'powered-off'));
  });
});
