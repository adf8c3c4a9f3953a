import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { c as createTar } from 'tar';
import { followDockerStream } from './docker-stream.ts';
import { imageExists } from './image-exists.ts';
import { baseTag, type BaseRecipe } from './recipe.ts';

export interface BaseImageOptions {
  docker: Docker;
  recipe: BaseRecipe;
  onProgress: (line: string) => void;
  /** Make it again even when its tag exists. */
  force?: boolean;
  signal?: AbortSignal;
  /** Where the root filesystem tarball is written for the moment it takes to load it. */
  scratchDir?: string;
}

/** What making one image came to. */
export interface MadeImage {
  tag: string;
  built: boolean;
  seconds: number;
}

// No registry is needed: the base is made from Debian's own packages with the machine's apt configuration. Where a
// registry is reachable, `debian:<suite>` could be pulled instead, but it would need its own recipe (its digest) in
// the tag: a tag must name how its image was made, and a pulled image is not made by this code.

/**
 * Makes the base image its recipe names (`mmdebstrap` into a tarball, loaded as a one-layer image) unless that tag
 * exists. Throws with mmdebstrap's or the engine's last lines when either fails; leaves no tarball behind.
 */
export async function makeBaseImage(options: BaseImageOptions): Promise<MadeImage> {
  const { docker, recipe } = options;
  const tag = baseTag(recipe);
  const label = `base ${recipe.suite}/${recipe.arch}`;
  const startedAt = performance.now();
  if (options.force !== true && (await imageExists(docker, tag))) return { tag, built: false, seconds: 0 };

  options.onProgress(`${label}: making ${tag} with mmdebstrap --variant=${recipe.variant}`);
  const dir = await mkdtemp(join(options.scratchDir ?? tmpdir(), 'hermetic-base-'));
  try {
    const command = [`--variant=${recipe.variant}`, `--arch=${recipe.arch}`, `--include=${recipe.include.join(',')}`, '--format=tar', recipe.suite];
    await mmdebstrap([...command, join(dir, 'layer.tar')], (line) => options.onProgress(`${label}: ${line}`), options.signal);
    const made = performance.now();
    options.onProgress(`${label}: root filesystem made in ${seconds(made - startedAt)} s; loading it into the engine`);
    await loadOneLayerImage(docker, dir, {
      tag,
      arch: recipe.arch,
      labels: { 'hermetic.base': `${recipe.suite}-${recipe.arch}` },
      createdBy: `mmdebstrap ${command.join(' ')} (hermetic images, base maker ${recipe.makerVersion})`,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    if (!(await imageExists(docker, tag))) throw new Error(`docker load reported no error, but ${tag} is not there`);
    options.onProgress(`${label}: loaded in ${seconds(performance.now() - made)} s`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const total = (performance.now() - startedAt) / 1000;
  options.onProgress(`${label}: ${tag} made in ${total.toFixed(1)} s`);
  return { tag, built: true, seconds: total };
}

/**
 * Loads `<dir>/layer.tar` as a one-layer image through `docker load`, writing the image config and manifest next
 * to it. Not `docker import`: engines before 23 record the engine's own architecture on an imported image whatever
 * platform is asked for, and the builder then refuses an arm64 base as "linux/amd64".
 */
async function loadOneLayerImage(
  docker: Docker,
  dir: string,
  image: { tag: string; arch: string; labels: Record<string, string>; createdBy: string; signal?: AbortSignal },
): Promise<void> {
  const layer = createHash('sha256');
  for await (const chunk of createReadStream(join(dir, 'layer.tar'))) layer.update(chunk as Buffer);
  const created = new Date().toISOString();
  const config = JSON.stringify({
    architecture: image.arch,
    os: 'linux',
    created,
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/bash'], Labels: image.labels },
    rootfs: { type: 'layers', diff_ids: [`sha256:${layer.digest('hex')}`] },
    history: [{ created, created_by: image.createdBy }],
  });
  const configName = `${createHash('sha256').update(config).digest('hex')}.json`;
  await writeFile(join(dir, configName), config);
  await writeFile(join(dir, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [image.tag], Layers: ['layer.tar'] }]));
  const archive = createTar({ cwd: dir, portable: true }, ['manifest.json', configName, 'layer.tar']);
  const stream = await docker.loadImage(Readable.from(archive), image.signal === undefined ? {} : { abortSignal: image.signal });
  const outcome = await followDockerStream(stream, () => {});
  if (outcome.error !== undefined) throw new Error(`docker load of ${image.tag} failed: ${outcome.error}`);
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/** Runs mmdebstrap, streaming its status lines; rejects with its last lines when it fails. */
function mmdebstrap(args: string[], onLine: (line: string) => void, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    // stdin is closed: mmdebstrap reads a sources.list from it only when no suite is given, but never let it wait.
    const child = spawn('mmdebstrap', args, { stdio: ['ignore', 'pipe', 'pipe'], ...(signal === undefined ? {} : { signal }) });
    const tail: string[] = [];
    const collect = (line: string) => {
      tail.push(line);
      if (tail.length > 30) tail.shift();
      onLine(line);
    };
    createInterface({ input: child.stdout }).on('line', collect);
    createInterface({ input: child.stderr }).on('line', collect);
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') reject(new Error('mmdebstrap is not installed (apt-get install mmdebstrap); it makes the base images'));
      else reject(error);
    });
    child.on('close', (code, signalName) => {
      if (code === 0) resolve();
      else reject(new Error(`mmdebstrap ${args.join(' ')} failed (${code ?? signalName}):\n${tail.join('\n')}`));
    });
  });
}
