import { execFile, spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pathExists } from '../path-exists.ts';
import { describeError } from '../core/errors.ts';

/** Whether programs of a foreign architecture run here through qemu: now, once registered, or not at all and why. */
export type EmulationState = { state: 'ready'; handler: string } | { state: 'can-enable' } | { state: 'unavailable'; reason: string };

/** What the kernel of this machine can run; tests inject their own. */
export interface HostProbe {
  /** This machine's architecture in Debian's naming (amd64, arm64). */
  readonly arch: string;
  /** Why a 32-bit x86 program cannot run here, or undefined when one just ran. */
  run32Bit(): Promise<string | undefined>;
  /** Whether `arch` programs run through a qemu binfmt_misc handler usable from containers (the F flag). */
  emulation(arch: string): Promise<EmulationState>;
  /** Mounts binfmt_misc if needed and registers qemu for `arch` with the F flag; throws with the reason if it cannot. */
  enableEmulation(arch: string): Promise<void>;
}

export interface HostProbeOptions {
  /** Where binfmt_misc is (or gets) mounted. */
  binfmtDir?: string;
  /** Where qemu-user-static keeps its binfmt definitions (Debian: /usr/lib/binfmt.d). */
  binfmtConfDir?: string;
  /** Where the 32-bit test program is written; must allow exec. */
  scratchDir?: string;
}

/** qemu's name for each Debian architecture it can emulate here. */
const qemuArchOf: Record<string, string> = { arm64: 'aarch64', amd64: 'x86_64' };

const runFile = promisify(execFile);

/** The Debian name of the architecture this process runs on. */
export function hostArch(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch === 'ia32' ? 'i386' : process.arch;
}

/** A probe of this machine's kernel: it runs a real 32-bit program and reads the real binfmt_misc. */
export function createHostProbe(options: HostProbeOptions = {}): HostProbe {
  const binfmtDir = options.binfmtDir ?? '/proc/sys/fs/binfmt_misc';
  const confDir = options.binfmtConfDir ?? '/usr/lib/binfmt.d';
  const arch = hostArch();

  async function definition(foreign: string): Promise<BinfmtDefinition | string> {
    const qemuArch = qemuArchOf[foreign];
    if (qemuArch === undefined) return `qemu user-mode emulation of ${foreign} is not supported by hermetic`;
    const file = join(confDir, `qemu-${qemuArch}.conf`);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      return `${foreign} programs need qemu user-mode emulation and ${file} is missing (apt-get install qemu-user-static)`;
    }
    const parsed = parseBinfmtDefinition(text);
    if (parsed === undefined) return `${file}: not a binfmt_misc definition`;
    if (!(await pathExists(parsed.interpreter))) return `${parsed.interpreter} (named in ${file}) is missing; reinstall qemu-user-static`;
    return parsed;
  }

  async function emulation(foreign: string): Promise<EmulationState> {
    const wanted = await definition(foreign);
    if (typeof wanted === 'string') return { state: 'unavailable', reason: wanted };
    if (!(await pathExists(join(binfmtDir, 'register')))) {
      if (process.getuid?.() === 0) return { state: 'can-enable' };
      return { state: 'unavailable', reason: `binfmt_misc is not mounted at ${binfmtDir} and only root may mount it` };
    }
    const status = (await readFile(join(binfmtDir, 'status'), 'utf8').catch(() => 'enabled')).trim();
    if (status !== 'enabled') return { state: 'unavailable', reason: `binfmt_misc is ${status} on this host (${binfmtDir}/status)` };
    for (const name of await readdir(binfmtDir)) {
      if (name === 'register' || name === 'status') continue;
      const entry = parseBinfmtEntry(await readFile(join(binfmtDir, name), 'utf8').catch(() => ''));
      if (entry === undefined || entry.magic !== wanted.magicHex) continue;
      if (!entry.enabled) return { state: 'unavailable', reason: `the binfmt_misc handler ${name} for ${foreign} is registered but disabled (echo 1 > ${join(binfmtDir, name)})` };
      if (!entry.flags.includes('F')) {
        return {
          state: 'unavailable',
          reason:
            `the binfmt_misc handler ${name} for ${foreign} was registered without the F flag, so containers cannot find its ` +
            `interpreter; remove it (echo -1 > ${join(binfmtDir, name)}) and hermetic registers it with F`,
        };
      }
      return { state: 'ready', handler: name };
    }
    try {
      await access(join(binfmtDir, 'register'), constants.W_OK);
    } catch {
      return { state: 'unavailable', reason: `registering a qemu handler for ${foreign} needs write access to ${binfmtDir}/register (root, and /proc/sys not read-only)` };
    }
    return { state: 'can-enable' };
  }

  return {
    arch,

    async run32Bit() {
      if (arch !== 'amd64') return `32-bit x86 programs need an x86-64 host; this one is ${arch}`;
      const dir = await mkdtemp(join(options.scratchDir ?? tmpdir(), 'hermetic-probe-'));
      try {
        const program = join(dir, 'exit7-i386');
        await writeFile(program, tinyI386Program(), { mode: 0o755 });
        const code = await exitCodeOf(program);
        if (code === 7) return undefined;
        return explain32BitFailure(code, await readFile('/proc/cmdline', 'utf8').catch(() => ''));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },

    emulation,

    async enableEmulation(foreign) {
      const before = await emulation(foreign);
      if (before.state === 'ready') return;
      if (before.state === 'unavailable') throw new Error(before.reason);
      if (!(await pathExists(join(binfmtDir, 'register')))) {
        try {
          await runFile('mount', ['-t', 'binfmt_misc', 'binfmt_misc', binfmtDir], { timeout: 10_000 });
        } catch (error) {
          throw new Error(`could not mount binfmt_misc at ${binfmtDir}: ${describeError(error).trim()}`, { cause: error });
        }
        if ((await emulation(foreign)).state === 'ready') return;
      }
      const wanted = await definition(foreign);
      if (typeof wanted === 'string') throw new Error(wanted);
      try {
        await writeFile(join(binfmtDir, 'register'), wanted.registerLine);
      } catch (error) {
        // Another process may have registered the same name meanwhile; the check below tells.
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new Error(`could not register a qemu handler for ${foreign} in ${binfmtDir}: ${describeError(error)}`, { cause: error });
        }
      }
      const after = await emulation(foreign);
      if (after.state !== 'ready') {
        throw new Error(`registered a qemu handler for ${foreign}, but it is not usable: ${after.state === 'unavailable' ? after.reason : 'not listed'}`);
      }
    },
  };
}

/** How running `program` with no arguments ended: its exit code, `signal NAME`, or the spawn error's code. */
export function exitCodeOf(program: string): Promise<number | string> {
  return new Promise((resolve) => {
    const child = spawn(program, [], { stdio: 'ignore' });
    child.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    child.on('exit', (exitCode, signal) => resolve(exitCode ?? `signal ${signal}`));
  });
}

/**
 * Why a 32-bit test program that should have exited 7 did `code` instead, for a person to act on. A kernel without
 * IA32 emulation refuses the exec with ENOEXEC, which execvp (and so Node's spawn) hides by handing the file to
 * /bin/sh, which then fails with 126 or 127 (or 2, a syntax error on the ELF's bytes).
 */
export function explain32BitFailure(code: number | string, kernelCommandLine: string): string {
  const refused = code === 'ENOEXEC' || code === 126 || code === 127 || code === 2;
  if (!refused) return `a 32-bit x86 test program did not run as expected (${code})`;
  const how = code === 'ENOEXEC' ? 'exec failed with ENOEXEC' : `exec failed with ENOEXEC, seen as exit ${code} from the shell execvp falls back to`;
  const turnedOff = /(^|\s)ia32_emulation=(off|0|false|n)(\s|$)/.test(kernelCommandLine);
  return turnedOff
    ? `this kernel cannot run 32-bit x86 programs (${how}): ia32_emulation=off is on its command line; boot with ia32_emulation=on`
    : `this kernel cannot run 32-bit x86 programs (${how}): its 32-bit emulation is off (boot with ia32_emulation=on) or was not built in (CONFIG_IA32_EMULATION)`;
}

interface BinfmtDefinition {
  interpreter: string;
  /** The magic bytes as lower-case hex, as binfmt_misc lists them. */
  magicHex: string;
  /** The definition with the F flag added: the kernel opens the interpreter now, so it works inside containers. */
  registerLine: string;
}

/** Parses a binfmt.d line `:name:type:offset:magic:mask:interpreter:flags`; undefined when it is not one. */
export function parseBinfmtDefinition(text: string): BinfmtDefinition | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(':'));
  if (line === undefined) return undefined;
  const fields = line.trim().split(':');
  const [, name, type, offset, magic, mask, interpreter, flags = ''] = fields;
  if (fields.length < 7 || name === undefined || type !== 'M' || magic === undefined || interpreter === undefined || interpreter === '') return undefined;
  const magicHex = Buffer.from(unescapeBinfmt(magic), 'latin1').toString('hex');
  const withF = flags.includes('F') ? flags : `${flags}F`;
  return { interpreter, magicHex, registerLine: `:${name}:${type}:${offset ?? ''}:${magic}:${mask ?? ''}:${interpreter}:${withF}` };
}

/** Parses a /proc/sys/fs/binfmt_misc/<name> entry; undefined for one that is not a magic-matching handler. */
export function parseBinfmtEntry(text: string): { enabled: boolean; flags: string; magic: string } | undefined {
  const lines = text.split('\n');
  const magic = lines.find((line) => line.startsWith('magic '))?.slice('magic '.length).trim();
  if (magic === undefined) return undefined;
  const flags = lines.find((line) => line.startsWith('flags:'))?.slice('flags:'.length).trim() ?? '';
  return { enabled: lines[0]?.trim() === 'enabled', flags, magic: magic.toLowerCase() };
}

function unescapeBinfmt(field: string): string {
  return field.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

/**
 * A complete i386 ELF program (96 bytes) that exits with status 7: `mov ebx, 7; mov eax, 1; int 0x80`. Running it
 * is the one sure test that the kernel runs 32-bit programs; a config file or a boot flag can say otherwise.
 */
function tinyI386Program(): Buffer {
  const code = [0xbb, 7, 0, 0, 0, 0xb8, 1, 0, 0, 0, 0xcd, 0x80];
  const loadAddress = 0x08048000;
  const headerBytes = 52 + 32;
  const elf = Buffer.alloc(headerBytes + code.length);
  elf.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1], 0); // magic, 32-bit, little-endian, version 1
  elf.writeUInt16LE(2, 16); // executable
  elf.writeUInt16LE(3, 18); // Intel 80386
  elf.writeUInt32LE(1, 20);
  elf.writeUInt32LE(loadAddress + headerBytes, 24); // entry point: the code after the headers
  elf.writeUInt32LE(52, 28); // program headers follow the ELF header
  elf.writeUInt16LE(52, 40);
  elf.writeUInt16LE(32, 42);
  elf.writeUInt16LE(1, 44);
  elf.writeUInt32LE(1, 52); // PT_LOAD the whole file at loadAddress, read + execute
  elf.writeUInt32LE(0, 56);
  elf.writeUInt32LE(loadAddress, 60);
  elf.writeUInt32LE(loadAddress, 64);
  elf.writeUInt32LE(elf.length, 68);
  elf.writeUInt32LE(elf.length, 72);
  elf.writeUInt32LE(5, 76);
  elf.writeUInt32LE(0x1000, 80);
  elf.set(code, headerBytes);
  return elf;
}
