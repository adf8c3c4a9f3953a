import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError } from '../../errors.ts';
import type { HostType } from '../../images/host-types.ts';
import { formatIssues } from '../../model/messages.ts';
import type { GceCosHostType } from './gce-instance.ts';

/** Where the deployed source says which machine each host type's workers get. */
export const machinesFile = fileURLToPath(new URL('../../../infra/deploy/machines.json', import.meta.url));

const machineSchema = z.strictObject({
  machineType: z.string().regex(/^[a-z][a-z0-9-]{1,62}$/, 'expected a machine type such as "e2-standard-2"'),
  /** Spot VMs cost a fraction and may be preempted; a preempted task is retried like a lost worker. */
  spot: z.boolean().default(false),
  diskGb: z.number().int().min(10).max(65_536).optional(),
});
const machinesSchema = z.record(z.string(), machineSchema);
export type Machines = z.infer<typeof machinesSchema>;

/** Container-Optimized OS image families, by the Docker platform of the builder image. */
const cosFamily: Record<HostType['platform'], string> = {
  'linux/amd64': 'projects/cos-cloud/global/images/family/cos-stable',
  'linux/arm64': 'projects/cos-cloud/global/images/family/cos-arm64-stable',
};

/** Reads and checks machines.json; throws ConfigError naming the file and field. */
export async function loadMachines(file: string = machinesFile): Promise<Machines> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(`${file}: ${(error as Error).message}`, { cause: error });
  }
  const parsed = machinesSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(`${file}: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

/**
 * How each host type runs on Compute Engine: Container-Optimized OS of the image's architecture, running the builder
 * image that deploy pushed (`images`: host type -> `name:tag` under `imageRepo`), on the machine machines.json names.
 * Host types without a pushed image or a machine are left out, so the compute says it cannot run them. Throws
 * ConfigError for a machine or image of a host type that has no recipe.
 */
export function gceHostTypes(options: {
  hostTypes: readonly HostType[];
  machines: Machines;
  images: ReadonlyMap<string, string>;
  imageRepo: string;
}): Map<string, GceCosHostType> {
  const known = new Map(options.hostTypes.map((hostType) => [hostType.name, hostType]));
  for (const [what, names] of [['machines.json', Object.keys(options.machines)], ['HERMETIC_IMAGES', [...options.images.keys()]]] as const) {
    const unknown = names.filter((name) => !known.has(name));
    if (unknown.length > 0) throw new ConfigError(`${what}: no host type ${unknown.join(', ')}; expected one of: ${[...known.keys()].join(', ')}`);
  }
  const result = new Map<string, GceCosHostType>();
  for (const [name, image] of options.images) {
    const machine = options.machines[name];
    const hostType = known.get(name);
    if (machine === undefined || hostType === undefined) continue;
    result.set(name, {
      kind: 'cos-container',
      machineType: machine.machineType,
      spot: machine.spot,
      ...(machine.diskGb === undefined ? {} : { diskGb: machine.diskGb }),
      sourceImage: cosFamily[hostType.platform],
      image: `${options.imageRepo}/${image}`,
    });
  }
  return result;
}
