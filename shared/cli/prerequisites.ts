import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import Docker from 'dockerode';
import { engineProblem } from '../adapters/docker/engine-problem.ts';
import { programsNotOnPath } from '../adapters/local/programs-on-path.ts';
import type { Config } from '../core/config/config.ts';
import { debianPackageOf } from '../core/pipeline/missing-tools.ts';
import { engineTimeoutMs } from '../runtimes/local/local-compute.ts';
import { describeError } from '../core/errors.ts';

// A fresh machine is the first thing people try this on. What the run cannot do without is found before anything is
// built: installed from Debian's archive where this process may (as .ci/run does), else named, with its package, and
// the run stops. A builder is never left to fail for a tool the machine lacks.

/** A program this machine must have for the run, the Debian package that has it, and what needs it. */
export interface Prerequisite {
  program: string;
  debianPackage: string | undefined;
  neededFor: string;
}

/**
 * The programs `up` needs here: git, which reads every repository, and the tools of each builder that will run in
 * the process sandbox: host type `host`, or a `host` fallback when no container will run (`containers` is `off`, or
 * no Docker engine answers; the engine is asked only when a fallback depends on it).
 */
export async function prerequisitesFor(config: Config, containers: 'auto' | 'off'): Promise<Prerequisite[]> {
  const used = [...new Set(config.repos.flatMap((repo) => repo.builders))].flatMap((name) => config.builders.get(name) ?? []);
  const fallsBack = used.some((builder) => builder.hostType !== 'host' && builder.fallbackHostType === 'host');
  const noContainers = fallsBack ? await whyNoContainers(containers) : undefined;
  const needs = new Map<string, string[]>([['git', ['reading the repositories']]]);
  for (const builder of used) {
    const where =
      builder.hostType === 'host' ? 'in the process sandbox' : builder.fallbackHostType === 'host' && noContainers !== undefined ? `in the process sandbox (${noContainers})` : undefined;
    if (where === undefined) continue;
    for (const program of builder.tools) needs.set(program, [...(needs.get(program) ?? []), `builder ${builder.name}, ${where}`]);
  }
  return [...needs].map(([program, neededFor]) => ({ program, debianPackage: debianPackageOf(program), neededFor: neededFor.join('; ') }));
}

/** Why no container will run for this `up`, or undefined when they will. */
async function whyNoContainers(mode: 'auto' | 'off'): Promise<string | undefined> {
  if (mode === 'off') return 'containers are turned off (--no-docker)';
  const problem = await engineProblem(new Docker(), engineTimeoutMs);
  return problem === undefined ? undefined : `no Docker engine answers: ${problem}`;
}

export interface EnsureOptions {
  /** Install what is missing from Debian's archive, where this process may (root, or sudo without a password). */
  install: boolean;
  /** Progress and the reasons, for people. */
  onLine: (line: string) => void;
}

/**
 * Makes sure every prerequisite is on this process's PATH, installing the missing ones' Debian packages when allowed
 * and possible. Resolves with the ones still missing (empty: the run can go on), having said why on `onLine`.
 */
export async function ensurePrerequisites(needed: readonly Prerequisite[], options: EnsureOptions): Promise<Prerequisite[]> {
  const missingNow = async () => {
    const absent = new Set(await programsNotOnPath(needed.map((need) => need.program), process.env.PATH ?? ''));
    return needed.filter((need) => absent.has(need.program));
  };
  const missing = await missingNow();
  if (missing.length === 0) return [];
  const packages = packagesOf(missing);
  const installer = options.install && packages.length > 0 ? await aptInstaller() : undefined;
  if (installer !== undefined) {
    options.onLine(`hermetic: this machine lacks ${missing.map((need) => need.program).join(', ')}; installing ${packages.join(' ')} from Debian (--no-install stops instead)`);
    try {
      await installer(packages, options.onLine);
    } catch (error) {
      options.onLine(`hermetic: ${describeError(error)}`);
    }
  }
  const left = installer === undefined ? missing : await missingNow();
  if (left.length > 0) options.onLine(missingMessage(left, options.install));
  return left;
}

/** The Debian packages that have `needs`, each once, in order. */
function packagesOf(needs: readonly Prerequisite[]): string[] {
  return [...new Set(needs.map((need) => need.debianPackage).filter((name) => name !== undefined))];
}

/** What to tell a person whose machine lacks `missing`: each program, its package and who needs it, then what to run. */
function missingMessage(missing: readonly Prerequisite[], installTried: boolean): string {
  const lines = missing.map((need) => `  ${need.program}${need.debianPackage === undefined ? '' : ` (Debian package ${need.debianPackage})`}: for ${need.neededFor}`);
  const packages = packagesOf(missing);
  const command = packages.length > 0 ? `apt-get install ${packages.join(' ')}` : `install ${missing.map((need) => need.program).join(', ')}`;
  const how = installTried
    ? ' (as root, or where sudo asks no password, hermetic installs them itself)'
    : ', or drop --no-install to let hermetic install them as root';
  return ['hermetic: this machine lacks what the run needs; nothing was built:', ...lines, `Run \`${command}\` and start again${how}.`].join('\n');
}

type Installer = (packages: readonly string[], onLine: (line: string) => void) => Promise<void>;

/** apt-get as root, or through `sudo -n` when that asks no password; undefined where neither can install. */
async function aptInstaller(): Promise<Installer | undefined> {
  if ((await programsNotOnPath(['apt-get'], process.env.PATH ?? '')).length > 0) return undefined;
  const prefix = process.getuid?.() === 0 ? [] : (await exitsZero('sudo', ['-n', 'true'])) ? ['sudo', '-n'] : undefined;
  if (prefix === undefined) return undefined;
  return async (packages, onLine) => {
    await run([...prefix, 'apt-get', 'update', '-q'], onLine);
    await run([...prefix, 'apt-get', 'install', '-y', '-q', '--no-install-recommends', ...packages], onLine);
  };
}

function exitsZero(program: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio: 'ignore' });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}

/** Runs `argv`, each line of its output to `onLine` as `apt: LINE`; rejects naming the command when it fails. */
function run(argv: readonly string[], onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const [program = '', ...args] = argv;
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    for (const stream of [child.stdout, child.stderr]) {
      // dpkg counts its database read in percent, a line each when not on a terminal: only the total is worth a line.
      createInterface({ input: stream }).on('line', (line) => /^\(Reading database \.\.\. \d*%?$/.test(line) || onLine(`apt: ${line}`));
    }
    child.once('error', (error) => reject(new Error(`${argv.join(' ')}: ${error.message}`, { cause: error })));
    child.once('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')} failed (${code ?? signal})`))));
  });
}
