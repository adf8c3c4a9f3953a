import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { formatIssues } from '../model/messages.ts';

/** Where the recipes live in this checkout: one folder per host type. */
export const defaultEnvDir = fileURLToPath(new URL('../../infra/env/', import.meta.url));

/** Docker platforms a recipe may target, with the Debian architecture of their userland. */
const debianArchOf = { 'linux/amd64': 'amd64', 'linux/arm64': 'arm64' } as const;

const metadataSchema = z.strictObject({
  description: z.string().min(1).max(200),
  platform: z.enum(['linux/amd64', 'linux/arm64']),
  /** The image runs 32-bit x86 programs on a 64-bit kernel, which must have its 32-bit support turned on. */
  runs32BitPrograms: z.boolean().default(false),
});

/** One environment a build can run in, as its recipe folder `infra/env/<name>/` describes it. */
export interface HostType {
  name: string;
  description: string;
  /** The Docker platform of the image, e.g. "linux/arm64". */
  platform: keyof typeof debianArchOf;
  /** The Debian architecture of its userland (the base image's `mmdebstrap --arch`). */
  arch: string;
  runs32BitPrograms: boolean;
  /** The recipe folder: the build context, and everything hashed into the image tag. */
  dir: string;
}

/** A host type name that has no recipe; the message names the known ones. */
export class UnknownHostTypeError extends ConfigError {
  override name = 'UnknownHostTypeError';
}

const namePattern = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Every host type with a recipe, sorted by name. Throws ConfigError naming the file when a recipe is malformed. */
export async function listHostTypes(envDir: string = defaultEnvDir): Promise<HostType[]> {
  const entries = await readdir(envDir, { withFileTypes: true });
  const names = entries.filter((entry) => entry.isDirectory() && namePattern.test(entry.name)).map((entry) => entry.name);
  return Promise.all(names.sort().map((name) => loadHostType(envDir, name)));
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

async function loadHostType(envDir: string, name: string): Promise<HostType> {
  const dir = join(envDir, name);
  const file = join(dir, 'host-type.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(`${file}: ${(error as Error).message}`, { cause: error });
  }
  const parsed = metadataSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(`${file}: ${formatIssues(parsed.error)}`);
  const entries = await readdir(dir);
  if (!entries.includes('Dockerfile')) throw new ConfigError(`${dir}: no Dockerfile`);
  // The tool stages the agent as agent/ in the build context; a recipe file of that name would be shadowed.
  if (entries.includes('agent')) throw new ConfigError(`${dir}: "agent" is reserved for the staged worker agent`);
  const { description, platform, runs32BitPrograms } = parsed.data;
  return { name, description, platform, arch: debianArchOf[platform], runs32BitPrograms, dir };
}
