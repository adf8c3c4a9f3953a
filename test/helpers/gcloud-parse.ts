import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * Runs gcloud commands as a person with no account and no gcloud setup would: each in an empty configuration and home
 * of its own, with no default project and no prompt. Many commands go through `gcloud-forker.py`, which imports gcloud
 * once and forks a child per command that runs gcloud's own main() on it (a plain gcloud process spends over a second
 * of CPU importing itself); where that cannot start, each command runs as `gcloud ARGS`.
 */

/** How one command ended. */
export interface GcloudRun {
  code: number;
  stderr: string;
}

/** Runs gcloud commands, at most `concurrency` at a time; `how` says whether through the forker or one process each. */
export interface GcloudRunner {
  run(argv: readonly string[]): Promise<GcloudRun>;
  /** `gcloud ARGS` as its own process, always: what the forked runs must agree with. */
  spawned(argv: readonly string[]): Promise<GcloudRun>;
  /** Forked, or spawned one process each, and then why the forker could not start. */
  readonly how: string;
  close(): Promise<void>;
}

const forker = fileURLToPath(new URL('./gcloud-forker.py', import.meta.url));

/** The environment of one command: nothing of this machine's gcloud setup, and a home of its own. */
function cleanEnv(home: string): NodeJS.ProcessEnv {
  return { PATH: process.env['PATH'] ?? '', HOME: home, CLOUDSDK_CONFIG: join(home, 'gcloud'), CLOUDSDK_CORE_DISABLE_PROMPTS: '1' };
}

function execGcloud(gcloud: string, args: readonly string[], options: { cwd: string; env: NodeJS.ProcessEnv }): Promise<GcloudRun & { stdout: string }> {
  return new Promise((resolve) => {
    execFile(gcloud, args, { ...options, timeout: 120_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr: stderr || String(error ?? '') });
    });
  });
}

/** Runs the tasks it is given at most `concurrency` at a time, in the order given. */
function limit(concurrency: number) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    // A finishing task hands its place straight to the next one, so no newcomer slips in between.
    if (active < concurrency) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next === undefined) active--;
      else next();
    }
  };
}

/**
 * A runner of the gcloud at `gcloud`, commands running in `cwd`, homes made under `scratch`. `preload` names the
 * commands to come, so the forker loads their modules once, before any child is forked.
 */
export async function startGcloudRunner(options: {
  gcloud: string;
  cwd: string;
  scratch: string;
  concurrency: number;
  preload: ReadonlyArray<readonly string[]>;
}): Promise<GcloudRunner> {
  const slot = limit(options.concurrency);
  const withHome = async <T>(use: (home: string) => Promise<T>): Promise<T> => {
    const home = await mkdtemp(join(options.scratch, 'home-'));
    try {
      return await use(home);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  };
  const spawned = (argv: readonly string[]) =>
    slot(() =>
      withHome(async (home): Promise<GcloudRun> => {
        const { code, stderr } = await execGcloud(options.gcloud, argv.slice(1), { cwd: options.cwd, env: cleanEnv(home) });
        return { code, stderr };
      }),
    );

  const forked = await startForker(options, withHome).catch((error: unknown) => String(error));
  if (typeof forked === 'string') return { run: spawned, spawned, how: `spawned, one process each (no forker: ${forked})`, close: async () => {} };
  return { run: (argv) => slot(() => withHome((home) => forked.run(argv, home))), spawned, how: 'forked', close: forked.close };
}

/** The forker, started and its commands preloaded; rejects when this gcloud cannot run it. */
async function startForker(
  options: { gcloud: string; cwd: string; scratch: string; preload: ReadonlyArray<readonly string[]> },
  withHome: <T>(use: (home: string) => Promise<T>) => Promise<T>,
) {
  // The Python and the SDK gcloud itself runs with (its wrapper picks them), as gcloud reports them.
  const info = await withHome((home) =>
    execGcloud(options.gcloud, ['info', '--format=json(basic.python_location,installation.sdk_root)'], { cwd: options.cwd, env: cleanEnv(home) }),
  );
  const { basic, installation } = JSON.parse(info.stdout) as { basic: { python_location: string }; installation: { sdk_root: string } };
  const home = await mkdtemp(join(options.scratch, 'forker-'));
  // -S as gcloud's wrapper runs it: the SDK's own packages, not the machine's.
  const child = spawn(basic.python_location, ['-S', forker, join(installation.sdk_root, 'lib')], { cwd: options.cwd, env: cleanEnv(home), stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const lines = createInterface({ input: child.stdout });
  const pending = new Map<number, (run: GcloudRun) => void>();
  let ready: () => void = () => {};
  const started = new Promise<void>((resolve, reject) => {
    ready = resolve;
    child.once('exit', (code) => reject(new Error(`the gcloud forker exited with ${code}: ${stderr}`)));
    child.once('error', reject);
  });
  // A forker that dies answers every command still waiting, with why.
  child.once('exit', (code) => {
    for (const answer of pending.values()) answer({ code: -1, stderr: `the gcloud forker exited with ${code}: ${stderr}` });
    pending.clear();
  });
  lines.on('line', (line) => {
    if (line === 'ready') return ready();
    const answer = JSON.parse(line) as GcloudRun & { id: number };
    pending.get(answer.id)?.({ code: answer.code, stderr: answer.stderr });
    pending.delete(answer.id);
  });
  await started;
  for (const argv of options.preload) child.stdin.write(`${JSON.stringify({ preload: argv.slice(1) })}\n`);
  let serial = 0;
  return {
    run(argv: readonly string[], commandHome: string): Promise<GcloudRun> {
      const id = ++serial;
      return new Promise((resolve) => {
        pending.set(id, resolve);
        child.stdin.write(`${JSON.stringify({ id, argv: argv.slice(1), home: commandHome, cwd: options.cwd })}\n`);
      });
    },
    async close(): Promise<void> {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin.end();
      await exited;
      await rm(home, { recursive: true, force: true });
    },
  };
}
