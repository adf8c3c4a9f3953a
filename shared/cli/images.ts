import { parseArgs } from 'node:util';
import Docker from 'dockerode';
import { engineProblem } from '../adapters/docker/engine-problem.ts';
import { describeError } from '../core/errors.ts';
import { buildImages, defaultCacheDir, envDirOf, type BuildReport } from '../images/build-images.ts';
import { listHostTypes } from '../images/host-types.ts';
import { imageStatus } from '../images/image-status.ts';
import { buildQemuGuest, type QemuGuest } from '../images/qemu-guest.ts';
import { projectDir } from './catalog.ts';
import { exitCodes, UsageError, type Io } from './io.ts';

export const imagesHelp = `Usage: hermetic images <command> [options]

Builds and lists the worker images, one per host type, made from the recipes in infra/env/<host type>/. An image's
tag is the hash of its recipe (Dockerfile, metadata, Debian base or parent image, agent, Node binary), so an image
that exists is up to date, and a changed recipe always gets a new tag.

Commands:
  build [HOST_TYPE...]   build the missing images (default: every host type available on this host)
  list                   show each host type, its tag, whether it is built and whether it can run here
  guest                  build the Debian guest that qemu host types boot (infra/vm/qemu-guest/)

Options:
  -h, --help   show help (also: hermetic images build --help, hermetic images list --help)`;

const buildHelp = `Usage: hermetic images build [HOST_TYPE...] [options]

Builds the image of each named host type (default: every host type) unless its tag exists. A host type this
machine cannot run (a 64-bit-only kernel for linux-386, no qemu for linux-arm64) is reported with the reason and
skipped; every other one is built, whatever became of the ones before it. A parent image and the Debian base are
made first when missing, the base from Debian's packages with mmdebstrap; no registry is needed. Progress goes to
stderr.

Options:
  --force      build again, bases included and without the layer cache, even when the tags exist
  --json       print {images: [{hostType, tag, built, seconds}], unavailable: [{hostType, reason}],
               failed: [{hostType, reason}]} on stdout, and nothing else there
  -h, --help   show this help

Exit status: 0 when every host type that can run here is built or up to date (those that cannot are only
reported), 1 when a build that could run failed or no Docker engine answers, 2 for bad usage or an unknown host
type, 130 when interrupted.`;

const listHelp = `Usage: hermetic images list [options]

Shows each host type: its platform, the tag its recipe hashes to, whether that image is built, and whether the
host type can run on this host (and if not, why).

Options:
  --json       print a JSON array of {hostType, description, platform, tag, built, available, reason} on stdout
  -h, --help   show this help

Exit status: 0, or 2 for bad usage.`;

const guestHelp = `Usage: hermetic images guest [options]

Builds the amd64 guest that qemu host types boot, from the recipe in infra/vm/qemu-guest/ and Debian's packages
(mmdebstrap, then mke2fs and qemu-img; needs root), unless the one its recipe hashes to exists. Prints where its
disk image, kernel and initrd are; a qemu host VM's image carries them. Progress goes to stderr.

Options:
  --json       print {tag, image, kernel, initrd} on stdout, and nothing else there
  -h, --help   show this help

Exit status: 0 when the guest is built or up to date, 1 when it could not be built (the reason is on stderr),
2 for bad usage.`;

/** How long the Docker engine may take to answer; building images needs one. */
const engineTimeoutMs = 10_000;

/** `hermetic images build|list|guest`: builds or lists the host types' worker images; returns the exit status. */
export async function images(args: string[], io: Io): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case undefined:
      io.stdout(imagesHelp);
      return exitCodes.usage;
    case 'help':
    case '-h':
    case '--help':
      io.stdout(imagesHelp);
      return exitCodes.ok;
    case 'build':
      return build(rest, io);
    case 'list':
      return list(rest, io);
    case 'guest':
      return guest(rest, io);
    default:
      throw new UsageError(`unknown images command "${command}"; expected build, list or guest`);
  }
}

async function build(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout(buildHelp);
    return exitCodes.ok;
  }
  const known = (await listHostTypes(envDirOf({}))).map((type) => type.name);
  for (const name of positionals) {
    if (!known.includes(name)) throw new UsageError(`unknown host type "${name}"; expected one of: ${known.join(', ')}`);
  }
  const docker = new Docker();
  const unreachable = await engineProblem(docker, engineTimeoutMs);
  if (unreachable !== undefined) {
    io.stderr(`hermetic: images are built by a Docker engine, and none answers: ${unreachable}`);
    return exitCodes.failure;
  }

  const controller = new AbortController();
  let interrupted = false;
  void io.interrupted.then(() => {
    interrupted = true;
    controller.abort();
  });
  let report: BuildReport;
  try {
    report = await buildImages({
      docker,
      ...(positionals.length > 0 ? { hostTypes: positionals } : {}),
      force: values.force,
      onProgress: (line) => io.stderr(line),
      signal: controller.signal,
    });
  } catch (error) {
    if (interrupted) {
      io.stderr('hermetic: interrupted; the build was stopped');
      return exitCodes.interrupted;
    }
    io.stderr(`hermetic: ${describeError(error)}`);
    return exitCodes.failure;
  }
  if (values.json) io.stdout(JSON.stringify(report, null, 2));
  else io.stdout(reportTable(report));
  return report.failed.length > 0 ? exitCodes.failure : exitCodes.ok;
}

/** The flags of the commands that take only --json and --help; throws on anything else. */
function jsonOrHelp(args: string[]): { json: boolean; help: boolean } {
  return parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
}

async function guest(args: string[], io: Io): Promise<number> {
  const values = jsonOrHelp(args);
  if (values.help) {
    io.stdout(guestHelp);
    return exitCodes.ok;
  }
  let built: QemuGuest;
  try {
    built = await buildQemuGuest({ projectDir, cacheDir: defaultCacheDir(), onProgress: (line) => io.stderr(line) });
  } catch (error) {
    io.stderr(`hermetic: ${describeError(error)}`);
    return exitCodes.failure;
  }
  if (values.json) io.stdout(JSON.stringify(built, null, 2));
  else io.stdout([`qemu guest ${built.tag}`, `  image   ${built.image}`, `  kernel  ${built.kernel}`, `  initrd  ${built.initrd}`].join('\n'));
  return exitCodes.ok;
}

async function list(args: string[], io: Io): Promise<number> {
  const values = jsonOrHelp(args);
  if (values.help) {
    io.stdout(listHelp);
    return exitCodes.ok;
  }
  const docker = new Docker();
  const unreachable = await engineProblem(docker, engineTimeoutMs);
  if (unreachable !== undefined) io.stderr(`hermetic: no Docker engine answers (${unreachable}); whether images are built is unknown`);
  const statuses = await imageStatus(unreachable === undefined ? { docker } : {});
  if (values.json) {
    io.stdout(JSON.stringify(statuses.map((status) => ({ ...status, tag: status.tag ?? null, built: status.built ?? null, reason: status.reason ?? null })), null, 2));
    return exitCodes.ok;
  }
  const rows = [['HOST TYPE', 'PLATFORM', 'TAG', 'BUILT', 'AVAILABLE']];
  for (const status of statuses) {
    rows.push([
      status.hostType,
      status.platform,
      status.tag ?? '?',
      status.built === undefined ? '?' : status.built ? 'yes' : 'no',
      status.available ? 'yes' : 'no',
    ]);
  }
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  const lines = rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd());
  for (const status of statuses) if (status.reason !== undefined) lines.push(`${status.hostType}: ${status.reason}`);
  io.stdout(lines.join('\n'));
  return exitCodes.ok;
}

/** One line per host type: its tag and how it got there, or why it has none. */
function reportTable(report: BuildReport): string {
  const rows = [
    ...report.images.map((image) => [image.hostType, image.tag, image.built ? `built in ${image.seconds.toFixed(1)} s` : 'up to date']),
    ...report.unavailable.map((skipped) => [skipped.hostType, '-', skipped.reason]),
    ...report.failed.map((failed) => [failed.hostType, '-', `FAILED: ${failed.reason.split('\n')[0] ?? ''}`]),
  ];
  const widths = [0, 1].map((column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n');
}
