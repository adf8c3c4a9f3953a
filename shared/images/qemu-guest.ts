import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { z } from 'zod';
import { readJsonFile } from '../core/config/json-file.ts';
import { pathExists } from '../path-exists.ts';
import { agentPayloadFor } from './agent-payload.ts';
import { debianSuite } from './debian-suite.ts';
import { readRecipeFiles, sha256 } from './recipe.ts';

const runFile = promisify(execFile);

/** The guest recipe shipped in this checkout. */
export const defaultGuestDir = fileURLToPath(new URL('../../infra/vm/qemu-guest/', import.meta.url));

const guestSchema = z.strictObject({
  description: z.string().min(1).max(200),
  /** Debian packages beyond minbase: a kernel, systemd, and the builder's toolchain. */
  packages: z.array(z.string().regex(/^[a-z0-9][a-z0-9+.-]*$/, 'expected a Debian package name')).min(1),
});

/** A guest the qemu boot script boots: its disk, and the kernel and initrd it boots with (no bootloader). */
export interface QemuGuest {
  /** qcow2; the boot script boots a throwaway overlay of it. */
  image: string;
  kernel: string;
  initrd: string;
  /** Hash of everything that went in: the recipe, the Debian suite, the agent bundle and the Node binary. */
  tag: string;
}

export interface QemuGuestOptions {
  /** The checkout, for the agent bundle and Node binary. */
  projectDir: string;
  /** Built guests are kept under `<cacheDir>/qemu-guest/<tag>/`. */
  cacheDir: string;
  recipeDir?: string;
  /** The Debian suite (default: this machine's). */
  suite?: string;
  onProgress?: (line: string) => void;
}

/**
 * Builds (or finds, by the hash of what goes in) the amd64 guest of qemu host types, from Debian's packages only:
 * mmdebstrap writes the root file system, with the agent and a Node binary at /opt/hermetic, the builder user
 * (uid 1000) and a unit that runs the task qemu hands in through fw_cfg; `mke2fs -d` makes the disk from it, so
 * nothing is mounted. Needs root, mmdebstrap, e2fsprogs and qemu-utils. Throws ConfigError for a bad recipe, or an
 * Error carrying the failing tool's output.
 */
export async function buildQemuGuest(options: QemuGuestOptions): Promise<QemuGuest> {
  const recipeDir = options.recipeDir ?? defaultGuestDir;
  const progress = options.onProgress ?? (() => {});
  const recipeFile = join(recipeDir, 'guest.json');
  const recipe = await readJsonFile(recipeFile, guestSchema);
  const [suite, payload, files] = await Promise.all([
    options.suite ?? debianSuite(),
    agentPayloadFor('amd64', { projectDir: options.projectDir, cacheDir: options.cacheDir, onProgress: progress }),
    readRecipeFiles(recipeDir),
  ]);
  const tag = sha256(JSON.stringify({ v: 1, suite, files, agent: payload.bundleSha256, node: payload.nodeSha256 })).slice(0, 12);
  const outDir = join(options.cacheDir, 'qemu-guest', tag);
  const guest: QemuGuest = { image: join(outDir, 'guest.qcow2'), kernel: join(outDir, 'vmlinuz'), initrd: join(outDir, 'initrd.img'), tag };
  if (await pathExists(guest.image)) {
    progress(`qemu guest ${tag} is up to date`);
    return guest;
  }

  await mkdir(join(options.cacheDir, 'qemu-guest'), { recursive: true });
  const work = await mkdtemp(join(options.cacheDir, 'qemu-guest', `.build-${tag}-`));
  try {
    const payloadDir = join(work, 'payload');
    await mkdir(payloadDir);
    await writeFile(join(payloadDir, 'agent.mjs'), payload.bundle);
    await copyFile(payload.nodePath, join(payloadDir, 'node'));
    for (const name of ['run-task.sh', 'hermetic-agent.service']) await copyFile(join(recipeDir, name), join(payloadDir, name));
    const root = join(work, 'root');
    const hook = (script: string) => `--customize-hook=${script}`;
    progress(`qemu guest ${tag}: mmdebstrap ${suite} with ${recipe.packages.join(', ')}`);
    await run('mmdebstrap', [
      '--variant=minbase',
      `--include=${recipe.packages.join(',')}`,
      hook(`mkdir -p "$1/opt/hermetic" && cp -a ${payloadDir}/. "$1/opt/hermetic/" && chmod 0755 "$1/opt/hermetic/node" "$1/opt/hermetic/run-task.sh"`),
      hook('mv "$1/opt/hermetic/hermetic-agent.service" "$1/etc/systemd/system/"'),
      hook('chroot "$1" sh -c "groupadd --gid 1000 builder && useradd --uid 1000 --gid 1000 --create-home --shell /bin/sh builder"'),
      hook('chroot "$1" systemctl enable hermetic-agent.service'),
      hook('echo hermetic-guest > "$1/etc/hostname"'),
      suite,
      root,
    ]);
    const boot = await readdir(join(root, 'boot'));
    const kernel = boot.find((name) => name.startsWith('vmlinuz-'));
    const initrd = boot.find((name) => name.startsWith('initrd.img-'));
    if (kernel === undefined || initrd === undefined) throw new Error(`the guest has no kernel and initrd in /boot (found: ${boot.join(', ')})`);
    const staged = join(work, 'out');
    await mkdir(staged);
    await copyFile(join(root, 'boot', kernel), join(staged, 'vmlinuz'));
    await copyFile(join(root, 'boot', initrd), join(staged, 'initrd.img'));
    progress(`qemu guest ${tag}: making the disk`);
    await run('mke2fs', ['-q', '-t', 'ext4', '-L', 'root', '-d', root, join(work, 'guest.raw'), '4G']);
    await run('qemu-img', ['convert', '-q', '-O', 'qcow2', join(work, 'guest.raw'), join(staged, 'guest.qcow2')]);
    await rm(outDir, { recursive: true, force: true });
    await rename(staged, outDir);
    progress(`qemu guest ${tag} built`);
    return guest;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function run(program: string, args: string[]): Promise<void> {
  try {
    await runFile(program, args, { maxBuffer: 64 << 20 });
  } catch (error) {
    const failed = error as { stderr?: string; stdout?: string; message: string };
    const output = `${failed.stderr ?? ''}${failed.stdout ?? ''}`.trim().split('\n').slice(-20).join('\n');
    throw new Error(`${program} failed: ${output || failed.message}`, { cause: error });
  }
}
