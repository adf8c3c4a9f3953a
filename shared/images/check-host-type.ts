import { createHostProbe, type HostProbe } from './host-probe.ts';
import { defaultEnvDir, findHostType, type HostType } from './host-types.ts';

/** Whether a host type's workers can run on this machine, and if not, why. */
export type Availability = { available: true } | { available: false; reason: string };

export interface CheckOptions {
  /** What the kernel can run; the real machine's unless a test injects one. */
  probe?: HostProbe;
  envDir?: string;
}

/**
 * Whether `hostType` can run here: a foreign architecture needs a qemu handler that is (or can be) registered with
 * the F flag, and 32-bit programs need the kernel's 32-bit support. Never registers anything; the reason says
 * "not available on this host" and why. Throws UnknownHostTypeError for a name without a recipe.
 */
export async function checkHostType(hostType: string | HostType, options: CheckOptions = {}): Promise<Availability> {
  const type = typeof hostType === 'string' ? await findHostType(hostType, options.envDir ?? defaultEnvDir) : hostType;
  const probe = options.probe ?? createHostProbe();
  if (type.arch !== probe.arch) {
    const emulation = await probe.emulation(type.arch);
    if (emulation.state === 'unavailable') return { available: false, reason: `not available on this host: ${emulation.reason}` };
  }
  if (type.runs32BitPrograms) {
    const why = await probe.run32Bit();
    if (why !== undefined) return { available: false, reason: `not available on this host: ${why}` };
  }
  return { available: true };
}
