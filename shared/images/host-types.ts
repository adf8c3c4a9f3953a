import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { readJsonFile } from '../core/config/json-file.ts';
import { ConfigError } from '../core/errors.ts';

/** Where the recipes live in this checkout: one folder per host type. */
export const defaultEnvDir = fileURLToPath(new URL('../../infra/env/', import.meta.url));

/** Docker platforms a recipe may target, with the Debian architecture of their userland. */
const debianArchOf = { 'linux/amd64': 'amd64', 'linux/arm64': 'arm64' } as const;

const namePattern = /^[a-z0-9][a-z0-9-]{0,62}$/;
const hostTypeName = z.string().regex(namePattern, 'expected a host type name such as "linux-amd64"');

const metadataSchema = z.strictObject({
  description: z.string().min(1).max(200),
  platform: z.enum(['linux/amd64', 'linux/arm64']),
  /** The image runs 32-bit x86 programs on a 64-bit kernel, which must have its 32-bit support turned on. */
  runs32BitPrograms: z.boolean().default(false),
  /** The host type whose image this one is built on (passed as BASE), instead of a Debian base. */
  from: hostTypeName.optional(),
  /** The host type whose Dockerfile (and folder, as the build context) this one builds, instead of its own. */
  dockerfile: hostTypeName.optional(),
});

/** One environment a build can run in, as its recipe folder `infra/env/<name>/` describes it. */
export interface HostType {
  name: string;
  description: string;
  /** The Docker platform of the image, e.g. "linux/arm64". */
  platform: keyof typeof debianArchOf;
  /** The Debian architecture of its userland (the base image's `mmdebstrap --arch`). */
  arch: string;
  /** Its own host-type.json says so, or its parent's does: a child image holds everything its parent does. */
  runs32BitPrograms: boolean;
  /** The host type's own folder; every file in it is hashed into the image tag. */
  dir: string;
  /**
   * The folder whose Dockerfile is built, and the build context: `dir`, or the folder of the host type named in
   * "dockerfile" (then its files are hashed into the tag too).
   */
  contextDir: string;
  /** The host type named in "from", whose image is this one's BASE; undefined when built on a Debian base. */
  parent: HostType | undefined;
}

/** A host type name that has no recipe; the message names the known ones. */
export class UnknownHostTypeError extends ConfigError {
  override name = 'UnknownHostTypeError';
}

/**
 * Every host type with a recipe, sorted by name, each linked to its parent. Throws ConfigError naming the file and
 * field when a recipe is malformed, names an unknown host type, a cycle of parents, or a platform not its parent's.
 */
export async function listHostTypes(envDir: string = defaultEnvDir): Promise<HostType[]> {
  const entries = await readdir(envDir, { withFileTypes: true });
  const names = entries.filter((entry) => entry.isDirectory() && namePattern.test(entry.name)).map((entry) => entry.name);
  const recipes = await Promise.all(names.sort().map((name) => loadRecipe(envDir, name)));
  return linkRecipes(recipes);
}

/** The named host type; throws UnknownHostTypeError listing the known ones when there is no such recipe. */
export async function findHostType(name: string, envDir: string = defaultEnvDir): Promise<HostType> {
  const all = await listHostTypes(envDir);
  const found = all.find((hostType) => hostType.name === name);
  if (found === undefined) {
    throw new UnknownHostTypeError(`unknown host type "${name}"; expected one of: ${all.map((hostType) => hostType.name).join(', ')}`);
  }
  return found;
}

/** One folder's recipe as read, before the names it mentions are checked against the others. */
interface Recipe {
  name: string;
  dir: string;
  file: string;
  hasDockerfile: boolean;
  metadata: z.infer<typeof metadataSchema>;
}

async function loadRecipe(envDir: string, name: string): Promise<Recipe> {
  const dir = join(envDir, name);
  const file = join(dir, 'host-type.json');
  const metadata = await readJsonFile(file, metadataSchema);
  const entries = await readdir(dir);
  const hasDockerfile = entries.includes('Dockerfile');
  if (!hasDockerfile && metadata.dockerfile === undefined) {
    throw new ConfigError(`${dir}: no Dockerfile (nor a "dockerfile" in host-type.json naming the host type whose Dockerfile to build)`);
  }
  if (hasDockerfile && metadata.dockerfile !== undefined) {
    throw new ConfigError(`${file}: dockerfile: names ${metadata.dockerfile}'s Dockerfile, but ${dir} has its own; keep one`);
  }
  // The tool stages the agent as agent/ in the build context; a recipe file of that name would be shadowed.
  if (entries.includes('agent')) throw new ConfigError(`${dir}: "agent" is reserved for the staged worker agent`);
  return { name, dir, file, hasDockerfile, metadata };
}

/** Resolves "from" and "dockerfile" to the host types they name, checking each name, cycles and platforms. */
function linkRecipes(recipes: Recipe[]): HostType[] {
  const byName = new Map(recipes.map((recipe) => [recipe.name, recipe]));
  const known = () => recipes.map((recipe) => recipe.name).join(', ');
  const linked = new Map<string, HostType>();

  const link = (recipe: Recipe, path: string[]): HostType => {
    const done = linked.get(recipe.name);
    if (done !== undefined) return done;
    const { metadata, file } = recipe;

    let contextDir = recipe.dir;
    if (metadata.dockerfile !== undefined) {
      const lender = byName.get(metadata.dockerfile);
      if (lender === undefined) throw new ConfigError(`${file}: dockerfile: no host type "${metadata.dockerfile}"; expected one of: ${known()}`);
      if (!lender.hasDockerfile) {
        throw new ConfigError(`${file}: dockerfile: ${lender.name} has no Dockerfile of its own (it builds ${lender.metadata.dockerfile}'s); name that one`);
      }
      contextDir = lender.dir;
    }

    let parent: HostType | undefined;
    if (metadata.from !== undefined) {
      const parentRecipe = byName.get(metadata.from);
      if (parentRecipe === undefined) throw new ConfigError(`${file}: from: no host type "${metadata.from}"; expected one of: ${known()}`);
      const chain = [...path, recipe.name];
      if (parentRecipe.name === recipe.name) throw new ConfigError(`${file}: from: names ${recipe.name} itself; a host type cannot be built on its own image`);
      if (chain.includes(parentRecipe.name)) {
        const cycle = [...chain.slice(chain.indexOf(parentRecipe.name)), parentRecipe.name];
        throw new ConfigError(`${file}: from: the host types ${cycle.join(' → ')} each build on the next, a cycle; one of them must build on a Debian base`);
      }
      parent = link(parentRecipe, chain);
      if (parent.platform !== metadata.platform) {
        throw new ConfigError(
          `${file}: platform: ${metadata.platform}, but its parent ${parent.name} ("from") is ${parent.platform}; ` +
            'a host type is built on its parent\'s image, so both must have the same platform',
        );
      }
    }

    const type: HostType = {
      name: recipe.name,
      description: metadata.description,
      platform: metadata.platform,
      arch: debianArchOf[metadata.platform],
      runs32BitPrograms: metadata.runs32BitPrograms || parent?.runs32BitPrograms === true,
      dir: recipe.dir,
      contextDir,
      parent,
    };
    linked.set(recipe.name, type);
    return type;
  };

  return recipes.map((recipe) => link(recipe, []));
}
