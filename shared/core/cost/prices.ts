/**
 * What a worker costs on Compute Engine, from a price table. Pure: no I/O, no SDK.
 *
 * The rates are Compute Engine's LIST prices for us-central1 (Iowa), in US dollars, as published in Google's VM
 * instance pricing and disk pricing pages in 2024 (on-demand) and 2024-2025 (Spot). They are to be checked before
 * anyone relies on them: list prices differ by region, Spot prices may change as often as once a month, and
 * committed-use or negotiated discounts are not in them. Compute Engine bills vCPUs and memory per second with a
 * one-minute minimum, so the cost of a task is the per-second rate times its seconds, at least 60.
 */

/** Dollars per hour of one vCPU and of one GB of memory, for one machine family. */
interface FamilyRates {
  vcpuHour: number;
  gbHour: number;
}

/** On-demand and Spot rates of the families the host types use, us-central1. */
export const familyRates: Readonly<Record<string, { onDemand: FamilyRates; spot: FamilyRates }>> = {
  e2: { onDemand: { vcpuHour: 0.021811, gbHour: 0.002923 }, spot: { vcpuHour: 0.006543, gbHour: 0.000877 } },
  n2: { onDemand: { vcpuHour: 0.031611, gbHour: 0.004237 }, spot: { vcpuHour: 0.00765, gbHour: 0.001025 } },
  c3: { onDemand: { vcpuHour: 0.03465, gbHour: 0.003938 }, spot: { vcpuHour: 0.01386, gbHour: 0.001575 } },
  /** Arm64 (Ampere Altra), for the linux-arm64 host type. */
  t2a: { onDemand: { vcpuHour: 0.0308, gbHour: 0.0042 }, spot: { vcpuHour: 0.0092, gbHour: 0.00126 } },
};

/** GB of memory per vCPU of each predefined shape, by family. */
const memoryPerVcpu: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  e2: { standard: 4, highmem: 8, highcpu: 1 },
  n2: { standard: 4, highmem: 8, highcpu: 1 },
  c3: { standard: 4, highmem: 8, highcpu: 2 },
  t2a: { standard: 4 },
};

/**
 * Persistent Disk, dollars per GB-month, by the disk type a worker's boot disk is made as (see machines.json); a month
 * is 730 hours in Google's pricing. Hyperdisk is not here: it bills provisioned IOPS and throughput besides.
 */
export const diskGbMonth = { 'pd-standard': 0.04, 'pd-balanced': 0.1, 'pd-ssd': 0.17 } as const;
export type DiskType = keyof typeof diskGbMonth;
/** The boot disk's type where a host type names none. */
export const defaultDiskType: DiskType = 'pd-balanced';

/** Whether the table prices disks of this type. */
export function isDiskType(text: string): text is DiskType {
  return Object.hasOwn(diskGbMonth, text);
}
const hoursPerMonth = 730;

/** The one-minute minimum Compute Engine bills a VM for. */
export const minimumBilledSeconds = 60;

/** A predefined machine type's shape: its family, vCPUs and memory. Undefined for a name not in the table. */
export function machineShape(machineType: string): { family: string; vcpus: number; memoryGb: number } | undefined {
  const match = /^([a-z][a-z0-9]*)-(standard|highmem|highcpu)-(\d+)$/.exec(machineType);
  if (match === null) return undefined;
  const [, family = '', shape = '', count = ''] = match;
  const perVcpu = memoryPerVcpu[family]?.[shape];
  const vcpus = Number(count);
  if (perVcpu === undefined || familyRates[family] === undefined || vcpus < 1) return undefined;
  return { family, vcpus, memoryGb: vcpus * perVcpu };
}

/** Dollars per second of a machine type, on-demand or Spot; undefined for a machine type the table lacks. */
export function pricePerSecond(machineType: string, spot: boolean): number | undefined {
  const shape = machineShape(machineType);
  const rates = shape === undefined ? undefined : familyRates[shape.family];
  if (shape === undefined || rates === undefined) return undefined;
  const rate = spot ? rates.spot : rates.onDemand;
  return (shape.vcpus * rate.vcpuHour + shape.memoryGb * rate.gbHour) / 3600;
}

/**
 * What one worker costs, in dollars: its machine for `seconds` (billed at least a minute) and, when given, its boot
 * disk of `diskType` (default pd-balanced) for as long. Undefined for a machine or disk type the table lacks, so an
 * unpriced worker is never shown as free.
 */
export function taskCost(machineType: string, spot: boolean, seconds: number, options: { diskGb?: number; diskType?: string } = {}): number | undefined {
  const rate = pricePerSecond(machineType, spot);
  const diskType = options.diskType ?? defaultDiskType;
  if (rate === undefined || !isDiskType(diskType)) return undefined;
  const diskRate = diskGbMonth[diskType];
  const billed = Math.max(minimumBilledSeconds, seconds);
  const disk = ((options.diskGb ?? 0) * diskRate) / hoursPerMonth / 3600;
  return (rate + disk) * billed;
}

/** A cost as the dashboard shows it: "$0.0123", "local" for a worker on this machine, "unpriced" for an unknown one. */
export function formatCost(usd: number | undefined, local: boolean): string {
  if (local) return 'local';
  if (usd === undefined) return 'unpriced';
  return usd >= 1 ? `$${usd.toFixed(2)}` : `$${usd.toFixed(4)}`;
}
