import type { protos } from '@google-cloud/compute';
import { defaultDiskType, type DiskType } from '../../core/cost/prices.ts';
import { endpointsOf, type Endpoint } from '../../core/model/endpoints.ts';
import { deploymentIdPattern } from '../../core/model/ids.ts';
import type { Machine } from '../../core/model/types.ts';
import type { WorkerRequest } from '../../ports/compute.ts';

/**
 * What a Compute Engine worker is made of, as plain data: the instance body, its labels and metadata, and the boot
 * scripts that run the agent once and power the VM off. No client is imported here (the type import is erased), so
 * this is cheap to load and to test.
 */

/** A Compute Engine instance resource, as the client takes it. */
export type GceInstance = protos.google.cloud.compute.v1.IInstance;

/** Fields every host type has. */
interface GceHostTypeBase {
  /** A machine type of the zone ("e2-standard-4"). */
  machineType: string;
  /** The boot disk's image ("projects/cos-cloud/global/images/family/cos-stable"). */
  sourceImage: string;
  /** A Spot VM: much cheaper, and may be preempted (it is then deleted, and the reaper retries its task). */
  spot?: boolean;
  /** Boot disk size; default 50 GB. */
  diskGb?: number;
  /** Boot disk type; default pd-balanced (Compute Engine's own default, pd-standard, is refused by newer series). */
  diskType?: DiskType;
}

/** Container-Optimized OS running the host type's builder image, as the Docker adapter runs it locally. */
export interface GceCosHostType extends GceHostTypeBase {
  kind: 'cos-container';
  /** The builder image in Artifact Registry; the VM pulls it without credentials, so its repository must be public. */
  image: string;
}

/** A Windows VM whose image holds Node and this repository; the agent runs there directly. */
export interface GceWindowsHostType extends GceHostTypeBase {
  kind: 'windows';
  /** Where the image has them; defaults in `windowsDefaults`. */
  node?: string;
  agent?: string;
  workDir?: string;
}

/** A Linux host VM with nested virtualization that boots a guest image with qemu; the guest runs the agent. */
export interface GceQemuHostType extends GceHostTypeBase {
  kind: 'qemu';
  guest: {
    /** The guest's disk image on the host's boot disk (qcow2); the VM boots a throwaway overlay of it. */
    image: string;
    /** The guest's kernel and initrd beside it (see shared/images/qemu-guest.ts): booted directly, no bootloader. */
    kernel: string;
    initrd: string;
    /** `qemu-system-<system>`: x86_64 (KVM when the host has /dev/kvm) or aarch64 (emulated). */
    system: 'x86_64' | 'aarch64';
    cpus?: number;
    memoryMb?: number;
  };
}

/** How one host type runs on Compute Engine. */
export type GceHostType = GceCosHostType | GceWindowsHostType | GceQemuHostType;

/** The VPC the workers are on. Workers reach Cloud Storage through it: an external IP, Cloud NAT or Private Google Access. */
export interface GceNetwork {
  /** "global/networks/default" unless given. */
  network?: string;
  /** "regions/<region>/subnetworks/<name>", for a custom-mode network. */
  subnetwork?: string;
  /** Give each VM an ephemeral external IP (default true); turn off where Cloud NAT or Private Google Access serve. */
  externalIp?: boolean;
  /** Network tags, for firewall rules (the workers need no inbound rule at all). */
  tags?: string[];
}

/** Metadata keys the adapter writes and reads back. */
export const metadataKeys = {
  spec: 'hermetic-task',
  deadline: 'hermetic-deadline',
  labels: 'hermetic-labels',
} as const;

/** Label keys the adapter owns; a request may not set them. */
export const labelKeys = { task: 'hermetic-task', deadline: 'hermetic-deadline', deployment: 'hermetic-deployment' } as const;

/** The metadata server's URL of the task spec, as the boot scripts fetch it (the header `Metadata-Flavor: Google` is required). */
export const specMetadataUrl = `http://metadata.google.internal/computeMetadata/v1/instance/attributes/${metadataKeys.spec}`;

/** Compute Engine's shortest and longest run-time limits. */
export const runDurationLimits = { minSeconds: 30, maxSeconds: 120 * 24 * 3600 } as const;

/** Compute Engine's cap on one metadata value. */
const maxMetadataValueBytes = 256 * 1024;
/** The boot disk size when a host type names none. */
const defaultDiskGb = 50;

/**
 * The machine a host type's worker runs on: Spot where the host type offers it and the builder allows it (it may
 * rather not lose a task to preemption), and its boot disk. What the VM is made of and what its task is billed for.
 */
export function machineOf(hostType: GceHostType, spotAllowed: boolean): Required<Machine> {
  return {
    type: hostType.machineType,
    spot: hostType.spot === true && spotAllowed,
    diskGb: hostType.diskGb ?? defaultDiskGb,
    diskType: hostType.diskType ?? defaultDiskType,
  };
}

/** Where the Windows image has Node, the agent and the work directory, unless the host type says. */
export const windowsDefaults = {
  node: 'C:\\hermetic\\node\\node.exe',
  agent: 'C:\\hermetic\\app\\shared\\agent\\main.ts',
  workDir: 'C:\\hermetic\\work',
} as const;

/** Compute Engine's instance name rule. */
export const instanceNamePattern = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Compute Engine's label key rule (its ASCII part): a lower-case letter first, at most 63 characters. */
export const labelKeyPattern = /^[a-z][a-z0-9_-]{0,62}$/;
/** Compute Engine's label value rule (its ASCII part): at most 63 characters, empty allowed. */
export const labelValuePattern = /^[a-z0-9_-]{0,63}$/;

/**
 * The instance of a task: `hermetic-<deployment>-<taskId>`, so two deployments in one project never share a VM name.
 * Throws on a deployment or task ID that cannot make a valid instance name.
 */
export function instanceName(deployment: string, taskId: string): string {
  const name = `hermetic-${deployment}-${taskId}`;
  if (!deploymentIdPattern.test(deployment) || !instanceNamePattern.test(name)) {
    throw new Error(`deployment ${JSON.stringify(deployment)} and task ID ${JSON.stringify(taskId)} make no valid instance name`);
  }
  return name;
}

/** A label key or value made to pass Compute Engine's rules: lower-cased, other characters as `_`, at most 63. */
export function sanitizeLabel(text: string, as: 'key' | 'value'): string {
  let out = text.toLowerCase().replace(/[^a-z0-9_-]/g, '_').slice(0, 63);
  if (as === 'key' && !/^[a-z]/.test(out)) out = `l${out}`.slice(0, 63);
  return out;
}

/**
 * The instance's labels: the request's, sanitized, plus the task, its deadline and the deployment. Throws when a
 * request label uses a key the adapter owns, or two keys sanitize to one (the exact labels are kept in metadata).
 */
export function instanceLabels(request: WorkerRequest, deployment: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const owned = new Set<string>(Object.values(labelKeys));
  for (const [key, value] of Object.entries(request.labels)) {
    const clean = sanitizeLabel(key, 'key');
    if (owned.has(clean)) throw new Error(`label ${JSON.stringify(key)} of task ${request.taskId} is the adapter's own`);
    if (clean in labels) throw new Error(`labels of task ${request.taskId} collide as Compute Engine label "${clean}"`);
    labels[clean] = sanitizeLabel(value, 'value');
  }
  return { ...labels, [labelKeys.task]: request.taskId, [labelKeys.deadline]: String(request.deadline), [labelKeys.deployment]: deployment };
}

/** The run-time limit in seconds for a deadline, within Compute Engine's limits (a nearer deadline gets 30 s). */
export function runDurationSeconds(deadline: number, now: number): number {
  const seconds = Math.ceil((deadline - now) / 1000);
  return Math.min(runDurationLimits.maxSeconds, Math.max(runDurationLimits.minSeconds, seconds));
}

/** What `instanceBody` needs besides the request. */
export interface InstanceBodyOptions {
  /** The deployment the VM belongs to (see deploymentIdPattern): in its name and labels. */
  deployment: string;
  zone: string;
  hostType: GceHostType;
  network?: GceNetwork;
  /** A service account to run the VM as, with no scopes (its token opens no API); by default none at all. */
  serviceAccount?: string;
  now: number;
}

/**
 * The instance body for a task: its spec, deadline and labels in metadata, sanitized labels, no service account
 * unless one is given, and then no scopes (the worker holds no credentials), a run-time limit from the deadline after which Compute Engine deletes it, Spot
 * if the host type allows, and the boot script of its kind. Throws when the spec is too big for instance metadata.
 */
export function instanceBody(request: WorkerRequest, options: InstanceBodyOptions): GceInstance {
  const { zone, hostType } = options;
  const spec = JSON.stringify(request.spec);
  if (Buffer.byteLength(spec) > maxMetadataValueBytes) {
    throw new Error(`the spec of task ${request.taskId} is ${Buffer.byteLength(spec)} bytes; instance metadata holds at most ${maxMetadataValueBytes}`);
  }
  if (request.readOnlyPaths !== undefined && request.readOnlyPaths.length > 0) {
    throw new Error(`task ${request.taskId} reads ${request.readOnlyPaths.join(', ')} from the machine that runs the pipeline (a file:// module proxy), which a Compute Engine worker cannot see; use an http(s) proxy`);
  }
  const stepNetwork = request.network === true;
  const boot =
    hostType.kind === 'cos-container'
      ? { key: 'startup-script', value: cosStartupScript(hostType.image, { stepNetwork, ...(stepNetwork && request.egress !== undefined ? { egress: [...request.egress, ...specHosts(request.spec)] } : {}) }) }
      : hostType.kind === 'windows'
        ? { key: 'windows-startup-script-ps1', value: windowsStartupScript(hostType) }
        : { key: 'startup-script', value: qemuStartupScript(hostType.guest, { stepNetwork }) };
  const network = options.network ?? {};
  const machine = machineOf(hostType, request.spot !== false);
  return {
    name: instanceName(options.deployment, request.taskId),
    machineType: `zones/${zone}/machineTypes/${machine.type}`,
    labels: instanceLabels(request, options.deployment),
    metadata: {
      items: [
        { key: metadataKeys.spec, value: spec },
        { key: metadataKeys.deadline, value: String(request.deadline) },
        // The request's labels exactly, which the sanitized instance labels may not keep.
        { key: metadataKeys.labels, value: JSON.stringify(request.labels) },
        boot,
        // Nobody logs in to a worker: project-wide SSH keys do not apply to it.
        { key: 'block-project-ssh-keys', value: 'true' },
      ],
    },
    disks: [
      {
        boot: true,
        autoDelete: true,
        type: 'PERSISTENT',
        initializeParams: {
          sourceImage: hostType.sourceImage,
          diskSizeGb: String(machine.diskGb),
          // Without it Compute Engine makes pd-standard, which c3 and newer series refuse and the prices do not assume.
          diskType: `zones/${zone}/diskTypes/${machine.diskType}`,
        },
      },
    ],
    networkInterfaces: [
      {
        network: network.network ?? 'global/networks/default',
        ...(network.subnetwork === undefined ? {} : { subnetwork: network.subnetwork }),
        accessConfigs: network.externalIp === false ? [] : [{ name: 'external-nat', type: 'ONE_TO_ONE_NAT' }],
      },
    ],
    ...(network.tags === undefined ? {} : { tags: { items: network.tags } }),
    scheduling: {
      provisioningModel: machine.spot ? 'SPOT' : 'STANDARD',
      // A restarted VM would only find its task done (its boot script runs a task once) and power off again.
      automaticRestart: false,
      ...(machine.spot ? { onHostMaintenance: 'TERMINATE' } : {}),
      maxRunDuration: { seconds: String(runDurationSeconds(request.deadline, options.now)) },
      // Deleted, not stopped, at the limit (and when a Spot VM is preempted): no VM outlives its deadline.
      instanceTerminationAction: 'DELETE',
    },
    ...(hostType.kind === 'qemu' ? { advancedMachineFeatures: { enableNestedVirtualization: true } } : {}),
    // Without serviceAccounts the VM has no service account, and its metadata server hands out no token.
    ...(options.serviceAccount === undefined ? {} : { serviceAccounts: [{ email: options.serviceAccount, scopes: [] }] }),
  };
}

/**
 * The start every Linux boot script shares: run once per VM (a marker in the state folder), `off` to power off with a
 * reason, and the spec fetched from the metadata server into the state folder (with `umask`: readable by root only).
 */
function bootPreamble(title: string, options: { umask: boolean }): string {
  return `#!/bin/bash
# hermetic worker (${title}
set -u
state=/var/lib/hermetic
spec="$state/task.json"
say() { echo "hermetic-boot: $*"; }
off() { say "powering off ($1)"; sync; poweroff; exit 0; }
if [ -e "$state/started" ]; then off "this VM already ran its task"; fi
mkdir -p "$state" && touch "$state/started" || off "cannot write $state"
${options.umask ? 'umask 077\n' : ''}curl -sSf --retry 10 --retry-connrefused --retry-delay 1 -H 'Metadata-Flavor: Google' -o "$spec" \\
  ${shellQuote(specMetadataUrl)} || off "cannot read the task spec from the metadata server"`;
}

/**
 * The COS boot script. Runs once per VM (a marker on the stateful disk): fetches the spec from the metadata server
 * as a root-only file, cuts the containers off the metadata server (it serves that spec, the task's signed URLs, to
 * anyone who asks; DNS on it stays), runs the builder image with the spec where its entrypoint reads it and the
 * Docker adapter's capabilities, then powers the VM off. Powering off, not deleting: the VM has no credentials to
 * delete itself with, and the stopped instance keeps the task's name taken until collect or the reaper deletes it.
 */
export function cosStartupScript(image: string, options: { stepNetwork: boolean; egress?: readonly Endpoint[] }): string {
  const caps = ['SYS_ADMIN', 'NET_ADMIN', 'SETUID', 'SETGID', 'SETPCAP', 'CHOWN', 'KILL', 'DAC_OVERRIDE'];
  return `${bootPreamble("Container-Optimized OS): run this VM's one task in the builder container, then power off.", { umask: true })}
chmod 0400 "$spec"
systemctl start docker || off "docker does not start"
# Containers get DNS from the metadata server's address, and nothing else from it.
iptables -I DOCKER-USER 1 -d 169.254.169.254/32 -j DROP \\
  && iptables -I DOCKER-USER 1 -d 169.254.169.254/32 -p udp --dport 53 -j RETURN \\
  && iptables -I DOCKER-USER 1 -d 169.254.169.254/32 -p tcp --dport 53 -j RETURN \\
  || off "cannot cut the containers off the metadata server"
${options.egress === undefined ? '' : egressRules(options.egress)}image=${shellQuote(image)}
for attempt in 1 2 3 4 5; do docker pull "$image" && break; sleep $((attempt * 5)); done
docker run --name hermetic-worker --network bridge \\
  --cap-drop ALL${caps.map((cap) => ` --cap-add ${cap}`).join('')} \\
  --security-opt no-new-privileges --pids-limit 4096 \\
  --mount "type=bind,source=$spec,target=/etc/hermetic/task.json,readonly" \\
  "$image"${options.stepNetwork ? ' --step-network' : ''}
code=$?
say "agent exited with code $code"
off "task done"
`;
}

/**
 * Holds the containers to `egress` (the host's own traffic, such as the image pull, is not forwarded and so not
 * held): new connections from docker0 go only to the addresses its hosts resolve to now, on their ports, and
 * to DNS; everything else is dropped. Replies to allowed connections pass.
 */
function egressRules(egress: readonly Endpoint[]): string {
  const allow = egress
    .map(({ host, port }) => `for ip in $(getent ahostsv4 ${shellQuote(host)} | awk '{ print $1 }' | sort -u); do iptables -A HERMETIC-EGRESS -d "$ip" -p tcp --dport ${port} -j RETURN || exit 1; done`)
    .join('\n  ');
  return `# The steps may reach only what they need (${egress.map(({ host, port }) => `${host}:${port}`).join(', ')}).
( set -e
  iptables -N HERMETIC-EGRESS
  iptables -A HERMETIC-EGRESS -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  iptables -A HERMETIC-EGRESS -d 169.254.169.254/32 -p udp --dport 53 -j RETURN
  iptables -A HERMETIC-EGRESS -d 169.254.169.254/32 -p tcp --dport 53 -j RETURN
  ${allow}
  iptables -A HERMETIC-EGRESS -j DROP
  iptables -I DOCKER-USER 1 -i docker0 -j HERMETIC-EGRESS
) || off "cannot hold the containers to the hosts they need"
`;
}

/** Where a worker's own signed URLs point (the bucket's host): a worker held to its egress still reaches them. */
function specHosts(spec: WorkerRequest['spec']): Endpoint[] {
  return endpointsOf([spec.source.url, spec.result.url, ...spec.log.chunkUrls, ...(spec.goModules?.upload === undefined ? [] : [spec.goModules.upload.url])]);
}

/**
 * The Windows boot script (PowerShell): once per VM, fetches the spec to a file, blocks the metadata server's HTTP
 * port for everything after it (DNS stays), runs the agent with Node, then shuts the VM down, also when a step of
 * its own fails (the trap).
 */
export function windowsStartupScript(hostType: Pick<GceWindowsHostType, 'node' | 'agent' | 'workDir'>): string {
  const node = hostType.node ?? windowsDefaults.node;
  const agent = hostType.agent ?? windowsDefaults.agent;
  const workDir = hostType.workDir ?? windowsDefaults.workDir;
  return `# hermetic worker (Windows): run this VM's one task with the agent, then shut down.
$ErrorActionPreference = 'Stop'
$state = 'C:\\hermetic\\state'
$spec = Join-Path $state 'task.json'
function Stop-Worker([string]$why) { Write-Output "hermetic-boot: shutting down ($why)"; Stop-Computer -Force; exit 0 }
trap { Stop-Worker "failed: $_" }
if (Test-Path (Join-Path $state 'started')) { Stop-Worker 'this VM already ran its task' }
New-Item -ItemType Directory -Force -Path $state | Out-Null
New-Item -ItemType File -Force -Path (Join-Path $state 'started') | Out-Null
Invoke-WebRequest -UseBasicParsing -Headers @{ 'Metadata-Flavor' = 'Google' } -OutFile $spec -Uri ${psQuote(specMetadataUrl)}
New-NetFirewallRule -DisplayName 'hermetic: no metadata server for steps' -Direction Outbound -Action Block -Protocol TCP -RemoteAddress 169.254.169.254 -RemotePort 80 | Out-Null
New-Item -ItemType Directory -Force -Path ${psQuote(workDir)} | Out-Null
$ErrorActionPreference = 'Continue'
& ${psQuote(node)} ${psQuote(agent)} --workdir ${psQuote(workDir)} --spec $spec
Write-Output "hermetic-boot: agent exited with code $LASTEXITCODE"
Stop-Worker 'task done'
`;
}

/**
 * The qemu host's boot script: once per VM, fetches the spec, boots a throwaway overlay of the guest image with the
 * spec as the fw_cfg file `opt/hermetic/task.json`, with qemu (KVM where the CPU can) as a user that cannot reach
 * the metadata server, waits for the guest to power off, then powers the host off. The guest (shared/images/
 * qemu-guest.ts) reads the spec and `opt/hermetic/args` from fw_cfg, runs the agent, and powers off when it exits.
 */
export function qemuStartupScript(guest: GceQemuHostType['guest'], options: { stepNetwork: boolean }): string {
  const cpus = guest.cpus ?? 2;
  const memoryMb = guest.memoryMb ?? 4096;
  const machine = guest.system === 'aarch64' ? 'virt' : 'q35';
  return `${bootPreamble("qemu host): boot the guest once with this VM's task, then power off.", { umask: false })}
id hermetic-qemu >/dev/null 2>&1 || useradd --system --no-create-home --groups kvm hermetic-qemu || off "cannot add the qemu user"
chown hermetic-qemu "$spec" && chmod 0400 "$spec"
# The guest's traffic leaves through qemu's user-mode network as this user: DNS from the metadata server, nothing else.
iptables -I OUTPUT 1 -m owner --uid-owner hermetic-qemu -d 169.254.169.254/32 -j REJECT \\
  && iptables -I OUTPUT 1 -m owner --uid-owner hermetic-qemu -d 169.254.169.254/32 -p udp --dport 53 -j ACCEPT \\
  && iptables -I OUTPUT 1 -m owner --uid-owner hermetic-qemu -d 169.254.169.254/32 -p tcp --dport 53 -j ACCEPT \\
  || off "cannot cut the guest off the metadata server"
qemu-img create -q -f qcow2 -F qcow2 -b ${shellQuote(guest.image)} "$state/guest.qcow2" && chown hermetic-qemu "$state/guest.qcow2" \\
  || off "cannot make the guest's disk"
# KVM only where the CPU offers virtualization (nested on Compute Engine); a bare /dev/kvm without it crawls.
if [ -w /dev/kvm ] && [ "$(uname -m)" = ${shellQuote(guest.system)} ] && grep -qE 'vmx|svm' /proc/cpuinfo; then accel='-accel kvm -cpu host'; else accel='-accel tcg -cpu max'; fi
setpriv --reuid hermetic-qemu --regid hermetic-qemu --init-groups -- \\
  qemu-system-${guest.system} -machine ${machine} $accel -smp ${cpus} -m ${memoryMb} \\
  -nographic -no-reboot \\
  -kernel ${shellQuote(guest.kernel)} -initrd ${shellQuote(guest.initrd)} -append 'root=/dev/vda rw console=${guest.system === 'aarch64' ? 'ttyAMA0' : 'ttyS0'} quiet' \\
  -drive "file=$state/guest.qcow2,if=virtio,format=qcow2" \\
  -fw_cfg "name=opt/hermetic/task.json,file=$spec" \\
${options.stepNetwork ? '  -fw_cfg "name=opt/hermetic/args,string=--step-network" \\\n' : ''}  -netdev user,id=net0 -device virtio-net-pci,netdev=net0
code=$?
say "guest exited with code $code"
off "task done"
`;
}

/** A POSIX shell single-quoted word. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A PowerShell single-quoted string. */
function psQuote(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
