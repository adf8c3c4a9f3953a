import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

// Tags are names for recipes: the same recipe always gets the same tag, and any change to what goes into an image
// (a Dockerfile line, a base package, the agent, the Node binary) gives a new one. So an image whose tag exists is
// up to date by construction, and nothing is ever rebuilt "just in case".

/**
 * The version of the code that makes base images (its mmdebstrap flags and the image config it loads). Bump it whenever that
 * code changes what a base holds, so every base, and so every image, gets a new tag.
 */
export const baseMakerVersion = 2;

/** What a base image is made from: `mmdebstrap --variant=<variant> --arch=<arch> --include=<include> <suite>`. */
export interface BaseRecipe {
  suite: string;
  arch: string;
  variant: 'minbase';
  include: readonly string[];
  makerVersion: number;
  /** Empty for real images; benchmarks set it to get fresh tags that nothing has cached. */
  salt: string;
}

/** One host type's image: its recipe folder's files, its base and the agent it ships. */
export interface ImageRecipe {
  hostType: string;
  /** Every file of the recipe folder (Dockerfile, host-type.json, anything else it copies), by relative path. */
  files: ReadonlyArray<{ path: string; sha256: string }>;
  /** The image it is built on (its BASE): a Debian base's tag, or the tag of its parent host type's image. */
  baseTag: string;
  agentSha256: string;
  nodeSha256: string;
  salt: string;
}

/** The hex sha256 of a string or bytes. */
export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The recipe of the base image for a Debian suite and architecture. */
export function baseRecipeFor(suite: string, arch: string, salt = ''): BaseRecipe {
  return { suite, arch, variant: 'minbase', include: ['ca-certificates'], makerVersion: baseMakerVersion, salt };
}

/** `hermetic/base-<suite>-<arch>:<12 hex of the recipe's hash>`. */
export function baseTag(recipe: BaseRecipe): string {
  const hash = sha256(
    JSON.stringify({
      kind: 'hermetic-base',
      suite: recipe.suite,
      arch: recipe.arch,
      variant: recipe.variant,
      include: [...recipe.include].sort(),
      makerVersion: recipe.makerVersion,
      salt: recipe.salt,
    }),
  );
  return `hermetic/base-${recipe.suite}-${recipe.arch}:${hash.slice(0, 12)}`;
}

/**
 * `hermetic/<host type>:<12 hex of the recipe's hash>`. The base tag carries the base recipe's hash into it, or, for
 * a host type built on a parent, the parent's tag, and so everything that went into the parent.
 */
export function imageTag(recipe: ImageRecipe): string {
  const hash = sha256(
    JSON.stringify({
      kind: 'hermetic-image',
      hostType: recipe.hostType,
      files: [...recipe.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map((file) => [file.path, file.sha256]),
      base: recipe.baseTag,
      agent: recipe.agentSha256,
      node: recipe.nodeSha256,
      salt: recipe.salt,
    }),
  );
  return `hermetic/${recipe.hostType}:${hash.slice(0, 12)}`;
}

/**
 * Every regular file under a recipe folder, and under the folder whose Dockerfile it builds when that is another
 * (`contextDir`, as "../<name>/..."), with the sha256 of its content; paths with "/" whatever the OS.
 */
export async function readRecipeFiles(dir: string, contextDir: string = dir): Promise<Array<{ path: string; sha256: string }>> {
  const folders = contextDir === dir ? [dir] : [dir, contextDir];
  const files: string[] = [];
  for (const folder of folders) {
    const entries = await readdir(folder, { recursive: true, withFileTypes: true });
    files.push(...entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name)));
  }
  return Promise.all(files.sort().map(async (file) => ({ path: relative(dir, file).split(sep).join('/'), sha256: sha256(await readFile(file)) })));
}
