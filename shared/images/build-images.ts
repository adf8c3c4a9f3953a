import { cp, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type Docker from 'dockerode';
import { c as createTar } from 'tar';
import { describeError } from '../core/errors.ts';
import { agentPayloadFor, type AgentPayload } from './agent-payload.ts';
import { makeBaseImage, type MadeImage } from './base-image.ts';
import { withBuildLock } from './build-lock.ts';
import { checkHostType } from './check-host-type.ts';
import { debianSuite } from './debian-suite.ts';
import { followDockerStream } from './docker-stream.ts';
import { createHostProbe, type HostProbe } from './host-probe.ts';
import { findHostType, listHostTypes, UnknownHostTypeError, type HostType } from './host-types.ts';
import { imageExists } from './image-exists.ts';
import { baseRecipeFor, baseTag, imageTag, readRecipeFiles, type BaseRecipe } from './recipe.ts';

/** Where recipes, the agent and caches are found; every field has a default that fits this checkout and machine. */
export interface ImagesOptions {
  /** The checkout holding shared/agent and node_modules (default: this one). */
  projectDir?: string;
  /** The recipes, one folder per host type (default: `<projectDir>/infra/env`). */
  envDir?: string;
  /** Fetched Node binaries and build locks (default: `$XDG_CACHE_HOME/hermetic`, else `~/.cache/hermetic`). */
  cacheDir?: string;
  /** The Debian suite of the bases (default: this machine's, from /etc/os-release). */
  suite?: string;
  /** Folded into every tag; benchmarks use it to get tags nothing has cached. Empty for real images. */
  salt?: string;
  /** What the kernel can run (default: a probe of this machine). */
  probe?: HostProbe;
}

export interface BuildOptions extends ImagesOptions {
  docker: Docker;
  /** Host types to build, by name (default: every one available on this host; the others are reported and skipped). */
  hostTypes?: string[];
  onProgress: (line: string) => void;
  /** Build again, without the engine's layer cache, even when the tags exist (bases included). */
  force?: boolean;
  signal?: AbortSignal;
}

export interface EnsureOptions extends ImagesOptions {
  docker: Docker;
  hostTypes?: string[];
  onProgress?: (line: string) => void;
  signal?: AbortSignal;
}

/** One host type's image after a build: `built` is false when its tag already existed. */
export interface BuiltImage {
  hostType: string;
  tag: string;
  built: boolean;
  seconds: number;
}

/** A host type's image could not be built (or its host type cannot run here); the message says which and why. */
export class ImageBuildError extends Error {
  override name = 'ImageBuildError';
}

/** `$XDG_CACHE_HOME/hermetic`, else `~/.cache/hermetic`. */
export function defaultCacheDir(): string {
  const xdg = process.env['XDG_CACHE_HOME'];
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.cache'), 'hermetic');
}

/**
 * The tag a host type's image has (or will have): `hermetic/<name>:<12 hex>` of its recipe, the base recipe (or its
 * parent's tag), the agent bundle and the Node binary. Throws UnknownHostTypeError for a name without a recipe, or
 * the reason the agent or its Node binary cannot be had.
 */
export async function imageTagFor(hostType: string, options: ImagesOptions = {}): Promise<string> {
  const type = await findHostType(hostType, settingsOf(options).envDir);
  return createTagResolver(options)(type);
}

/**
 * Like imageTagFor, for many host types at once: the agent is bundled and each architecture's Node binary hashed
 * once per resolver. A failure (say, no arm64 Node binary) rejects only the host types it concerns.
 */
export function createTagResolver(options: ImagesOptions = {}): (hostType: HostType) => Promise<string> {
  const resolve = createRecipeResolver(settingsOf(options));
  return async (type) => (await resolve(type)).tag;
}

/** The recipes folder these options point at. */
export function envDirOf(options: ImagesOptions): string {
  return settingsOf(options).envDir;
}

/** A host type nothing was built for, and why: this machine cannot run it, or its build failed. */
export interface NotBuilt {
  hostType: string;
  reason: string;
}

/** What `buildImages` did with each host type asked for; every one is in exactly one list. */
export interface BuildReport {
  /** Built now, or found up to date. */
  images: BuiltImage[];
  /** Host types this machine cannot run (see checkHostType); nothing was tried for them. */
  unavailable: NotBuilt[];
  /** Host types whose build could run here and failed; the reason names the failing step (a child's, its parent's). */
  failed: NotBuilt[];
}

/**
 * Builds the images of the named host types (default: all), each only if its tag is missing (or `force`), a missing
 * parent's first, showing progress through `onProgress`. One host type that cannot run here, or whose build fails,
 * stops none of the others: the report says what became of each. Throws UnknownHostTypeError for a bad name, and
 * rethrows when `signal` aborts.
 */
export async function buildImages(options: BuildOptions): Promise<BuildReport> {
  return run(options);
}

/**
 * Makes sure the images of the named host types (default: all) exist, building only the missing ones, and maps each
 * host type to its tag. Host types not available on this host are left out (the reason goes to `onProgress`;
 * `checkHostType` gives it too). Throws ImageBuildError when a build fails.
 */
export async function ensureImages(options: EnsureOptions): Promise<Map<string, string>> {
  const report = await run({ ...options, onProgress: options.onProgress ?? (() => {}) });
  const [failed] = report.failed;
  if (failed !== undefined) throw new ImageBuildError(`${failed.hostType}: ${failed.reason}`);
  return new Map(report.images.map((image) => [image.hostType, image.tag]));
}

interface Settings {
  projectDir: string;
  envDir: string;
  cacheDir: string;
  suite: string | undefined;
  salt: string;
  probe: HostProbe;
}

function settingsOf(options: ImagesOptions): Settings {
  const projectDir = options.projectDir ?? fileURLToPath(new URL('../../', import.meta.url));
  return {
    projectDir,
    envDir: options.envDir ?? join(projectDir, 'infra', 'env'),
    cacheDir: options.cacheDir ?? defaultCacheDir(),
    suite: options.suite,
    salt: options.salt ?? '',
    probe: options.probe ?? createHostProbe(),
  };
}

async function run(options: BuildOptions): Promise<BuildReport> {
  const settings = settingsOf(options);
  const { docker, onProgress, signal } = options;
  const force = options.force === true;
  const all = await listHostTypes(settings.envDir);
  const names = options.hostTypes === undefined ? all.map((type) => type.name) : [...new Set(options.hostTypes)];
  const chosen = names.map((name) => {
    const type = all.find((candidate) => candidate.name === name);
    if (type === undefined) throw new UnknownHostTypeError(`unknown host type "${name}"; expected one of: ${all.map((known) => known.name).join(', ')}`);
    return type;
  });

  const report: BuildReport = { images: [], unavailable: [], failed: [] };
  const runnable: HostType[] = [];
  for (const type of chosen) {
    const availability = await checkHostType(type, { probe: settings.probe });
    if (availability.available) runnable.push(type);
    else {
      onProgress(`${type.name}: skipped: ${availability.reason}`);
      report.unavailable.push({ hostType: type.name, reason: availability.reason });
    }
  }

  const resolve = createRecipeResolver(settings, onProgress);
  const lockDir = join(settings.cacheDir, 'locks');
  const bases = new Map<string, Promise<MadeImage>>();
  const images = new Map<string, Promise<BuiltImage>>();
  const withLock = <T>(name: string, key: string, work: () => Promise<T>) =>
    withBuildLock(lockDir, key, work, {
      onWait: (pid) => onProgress(`${name}: waiting for ${pid === undefined ? 'another process' : `process ${pid}`}, which is making ${key}`),
      ...(signal === undefined ? {} : { signal }),
    });

  // Once per host type and run: a parent that several children (or the caller) name is made, and reported, once.
  const ensure = (type: HostType): Promise<BuiltImage> => once(images, type.name, () => ensureOnce(type));
  const ensureOnce = async (type: HostType): Promise<BuiltImage> => {
    signal?.throwIfAborted();
    const startedAt = performance.now();
    try {
      if (type.arch !== settings.probe.arch) {
        // Registered on every run, not only when building: the registration does not survive a reboot, and
        // mmdebstrap, RUN steps and every worker of this host type need it.
        await settings.probe.enableEmulation(type.arch);
      }
      const recipe = await resolve(type);
      const built = await withLock(type.name, recipe.tag, async () => {
        // Checked under the lock: another process may have made it while this one waited.
        if (!force && (await imageExists(docker, recipe.tag))) return false;
        if (type.parent !== undefined) await ensureParent(type, type.parent);
        else await ensureBase(recipe);
        await dockerBuild(docker, type, recipe, { onProgress, force, signal });
        return true;
      });
      const seconds = (performance.now() - startedAt) / 1000;
      onProgress(built ? `${type.name}: ${recipe.tag} built in ${seconds.toFixed(1)} s` : `${type.name}: ${recipe.tag} is up to date`);
      return { hostType: type.name, tag: recipe.tag, built, seconds: Math.round(seconds * 1000) / 1000 };
    } catch (error) {
      if (signal?.aborted === true || error instanceof ImageBuildError) throw error;
      throw new ImageBuildError(`${type.name}: ${describeError(error)}`, { cause: error });
    }
  };
  const ensureParent = async (child: HostType, parent: HostType): Promise<void> => {
    try {
      await ensure(parent);
    } catch (error) {
      if (signal?.aborted === true) throw error;
      throw new ImageBuildError(`${child.name}: its parent could not be built: ${describeError(error)}`, { cause: error });
    }
  };
  const ensureBase = async (recipe: ResolvedRecipe): Promise<void> => {
    await once(bases, recipe.baseTag, () =>
      withLock(`base ${recipe.base.suite}/${recipe.base.arch}`, recipe.baseTag, () =>
        makeBaseImage({ docker, recipe: recipe.base, onProgress, force, ...(signal === undefined ? {} : { signal }) }),
      ),
    );
  };

  for (const type of runnable) {
    try {
      report.images.push(await ensure(type));
    } catch (error) {
      if (signal?.aborted === true || !(error instanceof ImageBuildError)) throw error;
      const prefix = `${type.name}: `;
      const reason = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
      onProgress(`${type.name}: failed: ${reason}`);
      report.failed.push({ hostType: type.name, reason });
    }
  }
  return report;
}

interface ResolvedRecipe {
  /** The Debian base at the root of its chain of parents (one platform, so one base, all along the chain). */
  base: BaseRecipe;
  /** What the Dockerfile gets as BASE: the Debian base's tag, or the parent host type's image tag. */
  baseTag: string;
  payload: AgentPayload;
  tag: string;
}

/**
 * Resolves recipes to tags, each host type (parents included) once per resolver, bundling the agent and finding
 * each architecture's Node binary once.
 */
function createRecipeResolver(settings: Settings, onProgress?: (line: string) => void): (type: HostType) => Promise<ResolvedRecipe> {
  let suite: Promise<string> | undefined;
  const payloads = new Map<string, Promise<AgentPayload>>();
  const payloadFor = (arch: string) =>
    once(payloads, arch, () => {
      const startedAt = performance.now();
      return agentPayloadFor(arch, {
        projectDir: settings.projectDir,
        cacheDir: settings.cacheDir,
        ...(onProgress === undefined ? {} : { onProgress }),
      }).then((made) => {
        const kb = Math.round(Buffer.byteLength(made.bundle) / 1024);
        onProgress?.(`agent (${arch}): bundled agent.mjs (${kb} KB), Node from ${made.nodeSource}, in ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
        return made;
      });
    });
  const recipes = new Map<string, Promise<ResolvedRecipe>>();
  const resolve = (type: HostType): Promise<ResolvedRecipe> => once(recipes, type.dir, () => resolveOnce(type));
  const resolveOnce = async (type: HostType): Promise<ResolvedRecipe> => {
    suite ??= settings.suite === undefined ? debianSuite() : Promise.resolve(settings.suite);
    const base = baseRecipeFor(await suite, type.arch, settings.salt);
    const [payload, files, parent] = await Promise.all([
      payloadFor(type.arch),
      readRecipeFiles(type.dir, type.contextDir),
      type.parent === undefined ? undefined : resolve(type.parent),
    ]);
    // A child's BASE is its parent's image, so the parent's tag (its folder, its base, the agent) is in the child's.
    const from = parent?.tag ?? baseTag(base);
    const tag = imageTag({ hostType: type.name, files, baseTag: from, agentSha256: payload.bundleSha256, nodeSha256: payload.nodeSha256, salt: settings.salt });
    return { base, baseTag: from, payload, tag };
  };
  return resolve;
}

/** What `map` holds for `key`, made by `make` (and kept) the first time it is asked for. */
function once<K, V extends object>(map: Map<K, V>, key: K, make: () => V): V {
  const known = map.get(key);
  if (known !== undefined) return known;
  const made = make();
  map.set(key, made);
  return made;
}

/**
 * Stages the build context (the folder of the Dockerfile it builds, plus agent/), runs `docker build` with BASE set to
 * the base's or the parent's tag, and checks the tag landed.
 */
async function dockerBuild(
  docker: Docker,
  type: HostType,
  recipe: ResolvedRecipe,
  options: { onProgress: (line: string) => void; force: boolean; signal: AbortSignal | undefined },
): Promise<void> {
  const context = await mkdtemp(join(tmpdir(), 'hermetic-context-'));
  try {
    await cp(type.contextDir, context, { recursive: true });
    await mkdir(join(context, 'agent'));
    await writeFile(join(context, 'agent', 'agent.mjs'), recipe.payload.bundle);
    // A link, packed as the file it points to (follow), spares copying a 100 MB binary per build.
    await symlink(recipe.payload.nodePath, join(context, 'agent', 'node'));
    const tarball = createTar({ cwd: context, follow: true, portable: true }, await readdir(context));
    options.onProgress(`${type.name}: building ${recipe.tag} (${type.platform}) from ${recipe.baseTag}`);
    const stream = await docker.buildImage(Readable.from(tarball), {
      t: recipe.tag,
      buildargs: { BASE: recipe.baseTag },
      platform: type.platform,
      labels: { 'hermetic.host-type': type.name, 'hermetic.recipe': recipe.tag },
      rm: true,
      forcerm: true,
      nocache: options.force,
      version: '1',
      ...(options.signal === undefined ? {} : { abortSignal: options.signal }),
    });
    const outcome = await followDockerStream(stream, (line) => options.onProgress(`${type.name}: ${line}`));
    if (outcome.error !== undefined) {
      const where = outcome.step === undefined ? '' : ` at "${outcome.step}"`;
      throw new ImageBuildError(`${type.name}: docker build failed${where}: ${outcome.error}${outcome.tail.length > 0 ? `\n${outcome.tail.join('\n')}` : ''}`);
    }
    if (!(await imageExists(docker, recipe.tag))) throw new ImageBuildError(`${type.name}: docker build reported no error, but ${recipe.tag} is not there`);
  } finally {
    await rm(context, { recursive: true, force: true });
  }
}
