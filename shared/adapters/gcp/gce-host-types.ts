import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { readJsonFile } from '../../core/config/json-file.ts';
import { defaultDiskType, diskGbMonth, isDiskType, type DiskType } from '../../core/cost/prices.ts';
import { ConfigError } from '../../core/errors.ts';
import type { HostType } from '../../images/host-types.ts';
import type { GceHostType } from './gce-instance.ts';

/** Where the deployed source says which machine each host type's workers get. */
export const machinesFile = fileURLToPath(new URL('../../../infra/deploy/machines.json', import.meta.url));

const machineFields = {
  machineType: z.string().regex(/^[a-z][a-z0-9-]{1,62}$/, 'expected a machine type such as "e2-standard-2"'),
  /** Spot VMs cost a fraction and may be preempted; a preempted task is retried like a lost worker. */
  spot: z.boolean().default(false),
  diskGb: z.number().int().min(10).max(65_536).optional(),
  /** The boot disk's type: one the price table prices and the machine's series takes (see checkDiskType). */
  diskType: z.string().optional(),
};

/**
 * The Persistent Disk types each machine series takes for a boot disk, per Compute Engine's machine series pages:
 * C3 takes no pd-standard (nor do the newer, Hyperdisk-only series, which are not priced here). A series not listed is
 * left to Compute Engine to refuse.
 */
export const seriesDiskTypes: Readonly<Record<string, readonly DiskType[]>> = {
  e2: ['pd-standard', 'pd-balanced', 'pd-ssd'],
  n2: ['pd-standard', 'pd-balanced', 'pd-ssd'],
  c3: ['pd-balanced', 'pd-ssd'],
  t2a: ['pd-standard', 'pd-balanced', 'pd-ssd'],
};

/** Refuses a boot disk type the price table does not price, or the machine's series does not take, naming the ones it may be. */
function checkDiskType(machine: { machineType: string; diskType?: string | undefined }, context: z.RefinementCtx): void {
  const diskType = machine.diskType ?? defaultDiskType;
  if (!isDiskType(diskType)) {
    context.addIssue({ code: 'custom', path: ['diskType'], message: `expected a disk type the price table prices (${Object.keys(diskGbMonth).join(', ')}), not ${diskType}` });
    return;
  }
  const series = machine.machineType.split('-')[0] ?? '';
  const accepted = seriesDiskTypes[series];
  if (accepted !== undefined && !accepted.includes(diskType)) {
    context.addIssue({ code: 'custom', path: ['diskType'], message: `${series} machines take ${accepted.join(', ')} boot disks, not ${diskType}` });
  }
}

const absolutePath = z.string().regex(/^\/[A-Za-z0-9._/-]+$/, 'expected an absolute path on the host image');
/** A host type with a builder image (infra/env/): Container-Optimized OS runs it. */
const containerMachine = z.strictObject({ kind: z.literal('cos-container').default('cos-container'), ...machineFields }).superRefine(checkDiskType);
/**
 * A qemu host type: a host VM from `sourceImage`, which carries qemu and the guest that `hermetic images guest`
 * builds, boots the guest with the task; nested virtualization gives it KVM where the guest is x86_64.
 */
const qemuMachine = z.strictObject({
  kind: z.literal('qemu'),
  ...machineFields,
  sourceImage: z.string().regex(/^projects\/[a-z][a-z0-9-]+\/global\/images\/[a-z0-9-/]+$/, 'expected projects/P/global/images/NAME'),
  guest: z.strictObject({
    image: absolutePath,
    kernel: absolutePath,
    initrd: absolutePath,
    system: z.enum(['x86_64', 'aarch64']),
    cpus: z.number().int().min(1).max(64).optional(),
    memoryMb: z.number().int().min(256).optional(),
  }),
}).superRefine(checkDiskType);
const machinesSchema = z.record(z.string(), z.union([qemuMachine, containerMachine]));
export type Machines = z.infer<typeof machinesSchema>;

/** Container-Optimized OS image families, by the Docker platform of the builder image. */
const cosFamily: Record<HostType['platform'], string> = {
  'linux/amd64': 'projects/cos-cloud/global/images/family/cos-stable',
  'linux/arm64': 'projects/cos-cloud/global/images/family/cos-arm64-stable',
};

/** Reads and checks machines.json; throws ConfigError naming the file and field. */
export function loadMachines(file: string = machinesFile): Promise<Machines> {
  return readJsonFile(file, machinesSchema);
}

/** What every host type's VM takes from its machines.json entry: the machine, Spot, and the boot disk. */
function vmOf(machine: Machines[string]): Pick<GceHostType, 'machineType' | 'spot' | 'diskGb' | 'diskType'> {
  return {
    machineType: machine.machineType,
    spot: machine.spot,
    ...(machine.diskGb === undefined ? {} : { diskGb: machine.diskGb }),
    ...(machine.diskType === undefined || !isDiskType(machine.diskType) ? {} : { diskType: machine.diskType }),
  };
}

/**
 * How each host type runs on Compute Engine, on the machine machines.json names: a container host type on
 * Container-Optimized OS of its image's architecture, running the builder image deploy pushed (`images`: host type ->
 * `name:tag` under `imageRepo`); a qemu host type as machines.json describes it. Container host types without a
 * pushed image or a machine are left out, so the compute says it cannot run them. Throws ConfigError for a container
 * machine or an image of a host type that has no recipe.
 */
export function gceHostTypes(options: {
  hostTypes: readonly HostType[];
  machines: Machines;
  images: ReadonlyMap<string, string>;
  imageRepo: string;
}): Map<string, GceHostType> {
  const known = new Map(options.hostTypes.map((hostType) => [hostType.name, hostType]));
  const containerMachines = Object.entries(options.machines).filter(([, machine]) => machine.kind === 'cos-container').map(([name]) => name);
  for (const [what, names] of [['machines.json', containerMachines], ['HERMETIC_IMAGES', [...options.images.keys()]]] as const) {
    const unknown = names.filter((name) => !known.has(name));
    if (unknown.length > 0) throw new ConfigError(`${what}: no host type ${unknown.join(', ')}; expected one of: ${[...known.keys()].join(', ')}`);
  }
  const result = new Map<string, GceHostType>();
  for (const [name, machine] of Object.entries(options.machines)) {
    if (machine.kind !== 'qemu') continue;
    const { cpus, memoryMb, ...guest } = machine.guest;
    result.set(name, {
      kind: 'qemu',
      ...vmOf(machine),
      sourceImage: machine.sourceImage,
      guest: { ...guest, ...(cpus === undefined ? {} : { cpus }), ...(memoryMb === undefined ? {} : { memoryMb }) },
    });
  }
  for (const [name, image] of options.images) {
    const machine = options.machines[name];
    const hostType = known.get(name);
    if (machine?.kind !== 'cos-container' || hostType === undefined) continue;
    result.set(name, {
      kind: 'cos-container',
      ...vmOf(machine),
      sourceImage: cosFamily[hostType.platform],
      image: `${options.imageRepo}/${image}`,
    });
  }
  return result;
}
