import { execFile } from 'node:child_process';
import { access, constants, mkdir, writeFile } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { deployPlan, teardownNotes, teardownPlan, type Command, type GitHubDeploy, type PlanOptions } from '../runtimes/google-cloud/deploy-plan.ts';
import { placePatterns } from '../adapters/gcp/environment.ts';
import { isGitHubAppId } from '../core/model/refs.ts';
import { describeError } from '../core/errors.ts';
import { createTagResolver } from '../images/build-images.ts';
import { listHostTypes } from '../images/host-types.ts';
import { projectDir } from './catalog.ts';
import { exitCodes, UsageError, type Io } from './io.ts';

export const deployHelp = `Usage: hermetic deploy --project P --region R [options]

Deploys hermetic to a Google Cloud project with gcloud: the APIs, a Firestore database, the blobs bucket (with
expiry rules), the topics with a dead-letter topic, service accounts with least privilege (one that Cloud Build
builds the functions and the dashboard as), the builder images, every function (each with the memory and CPU
shared/runtimes/google-cloud/function-sizes.ts gives it), the scheduler ticks and the dashboard on App Engine. Runs the commands one
after another, showing progress on stderr, and stops at the first failure, saying how to resume. Running it again
is safe: a step whose resource exists counts as done. Run it from the hermetic checkout, after
\`hermetic images build\`. It uses one of gcloud's beta commands (\`gcloud components install beta\` where gcloud
lacks them).

Options:
  --project P     the Google Cloud project ID (6-30 characters: lower-case letters, digits, hyphens)
  --region R      where everything runs, e.g. us-central1
  --zone Z        where worker VMs run (default: R-b)
  --app-region A  App Engine's region for the dashboard, where R has none (default: R; us-central1 is us-central,
                  europe-west1 is europe-west)
  --github AUTH   give the functions GitHub access for trybots and statuses, and deploy the webhook: AUTH is
                  "token" (a token in the secret hermetic-github-token) or "app" (a GitHub App's private key in
                  hermetic-github-app-key, with --github-app-id); the webhook secret is in hermetic-webhook-secret
  --github-app-id N       the GitHub App's ID, with --github app
  --github-api-url URL    GitHub Enterprise's API URL (default: github.com's)
  --from N        resume at command N (earlier look-ups are still run; the rest are skipped)
  --dry-run       print every command, one per line, shell-quoted, on stdout, and run nothing (needs no gcloud)
  --json          with --dry-run: print the commands as a JSON array of {argv, why, sets?, writes?}
  -h, --help      show this help

Exit status: 0 when every command succeeded, 1 when one failed, 2 for bad usage (a malformed project ID, region or
zone), 130 when interrupted.`;

export const teardownHelp = `Usage: hermetic teardown --project P --region R --yes [options]

Removes everything \`hermetic deploy\` made, in reverse order: the scheduler ticks, the functions, every worker VM
(labelled hermetic-task), the images, the grants, the service accounts, the topics, the bucket with every blob
and the Firestore database. The App Engine application stays (App Engine cannot delete one); it is scaled to zero.
A step whose resource is gone counts as done.

Options:
  --project P     the Google Cloud project ID
  --region R      the region it was deployed to
  --zone Z        the zone its worker VMs ran in (default: R-b)
  --github AUTH   it was deployed with --github AUTH: remove the webhook function and the GitHub secrets too
  --from N        resume at command N
  --dry-run       print every command on stdout and run nothing
  --json          with --dry-run: print the commands as a JSON array
  --yes           really delete (the database and blobs cannot be brought back)
  -h, --help      show this help

Exit status: 0 when everything is removed, 1 when a command failed, 2 for bad usage or without --yes, 130 when
interrupted.`;

/** What one command printed and how it ended. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** What deploy and teardown may touch beyond `Io`; tests replace them. */
export interface DeployDeps {
  /** Runs one argument vector with no shell, in `cwd`; never throws for a non-zero exit. */
  exec: (argv: string[], cwd: string) => Promise<ExecResult>;
  /** Whether a program is on PATH. */
  onPath: (program: string) => Promise<boolean>;
  /** The local builder images to push, by host type. */
  images: () => Promise<Array<{ hostType: string; tag: string }>>;
  writeFile: (path: string, text: string) => Promise<void>;
  /** Where the commands run: the checkout, whose source the functions deploy. */
  cwd: string;
}

/** `hermetic deploy`: runs (or with --dry-run prints) the deploy plan; returns the exit status. */
export async function deploy(args: string[], io: Io, deps: Partial<DeployDeps> = {}): Promise<number> {
  return plan('deploy', args, io, { ...defaultDeps(io), ...deps });
}

/** `hermetic teardown`: runs (or with --dry-run prints) the teardown plan; returns the exit status. */
export async function teardown(args: string[], io: Io, deps: Partial<DeployDeps> = {}): Promise<number> {
  return plan('teardown', args, io, { ...defaultDeps(io), ...deps });
}

async function plan(kind: 'deploy' | 'teardown', args: string[], io: Io, deps: DeployDeps): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      project: { type: 'string' },
      region: { type: 'string' },
      zone: { type: 'string' },
      'app-region': { type: 'string' },
      github: { type: 'string' },
      'github-app-id': { type: 'string' },
      'github-api-url': { type: 'string' },
      from: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      yes: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    io.stdout(kind === 'deploy' ? deployHelp : teardownHelp);
    return exitCodes.ok;
  }
  const place = validatePlace(values);
  const appRegion = values['app-region'];
  if (appRegion !== undefined && !/^[a-z]+-[a-z]+[0-9]*$/.test(appRegion)) {
    throw new UsageError(`--app-region ${JSON.stringify(appRegion)}: expected an App Engine region such as us-central or europe-west2`);
  }
  if (appRegion !== undefined && kind === 'teardown') throw new UsageError('--app-region is for deploy');
  const github = githubOf(values);
  const options: PlanOptions = { ...place, ...(appRegion === undefined ? {} : { appRegion }), ...(github === undefined ? {} : { github }) };
  const from = values.from === undefined ? 1 : Number(values.from);
  if (!Number.isInteger(from) || from < 1) throw new UsageError(`--from ${values.from}: expected a command number from 1`);
  if (values.json && !values['dry-run']) throw new UsageError('--json goes with --dry-run');
  if (kind === 'deploy' && values.yes) throw new UsageError('--yes is for teardown');
  const dryRun = values['dry-run'];
  if (kind === 'teardown' && !dryRun && !values.yes) {
    throw new UsageError('teardown deletes the database and every blob, which cannot be brought back; pass --yes to go on');
  }
  const images = kind === 'deploy' ? await deps.images() : [];
  const commands = kind === 'deploy' ? deployPlan({ ...options, images }) : teardownPlan(options);
  if (from > commands.length) throw new UsageError(`--from ${from}: the plan has ${commands.length} commands`);

  if (dryRun) {
    if (values.json) io.stdout(JSON.stringify(commands, null, 2));
    else for (const command of commands) io.stdout(shellLine(command));
    return exitCodes.ok;
  }
  for (const program of new Set(commands.map((command) => command.argv[0] ?? ''))) {
    if (!(await deps.onPath(program))) {
      io.stderr(
        `hermetic: ${program} is not on PATH; ${kind} runs ${program === 'gcloud' ? 'the Google Cloud CLI (gcloud), signed in with `gcloud auth login`' : program}. ` +
          'Install it, or see the commands with --dry-run.',
      );
      return exitCodes.failure;
    }
  }
  const code = await runPlan(commands, { ...deps, io, kind, from, resume: `hermetic ${kind} ${resumeArgs(options, kind)}` });
  if (code === exitCodes.ok && kind === 'teardown') for (const note of teardownNotes) io.stderr(`note: ${note}`);
  return code;
}

/** The --github flags, checked; undefined without --github. */
function githubOf(values: { github?: string | undefined; 'github-app-id'?: string | undefined; 'github-api-url'?: string | undefined }): GitHubDeploy | undefined {
  const auth = values.github;
  const appId = values['github-app-id'];
  const apiUrl = values['github-api-url'];
  if (auth === undefined) {
    if (appId !== undefined || apiUrl !== undefined) throw new UsageError('--github-app-id and --github-api-url go with --github');
    return undefined;
  }
  if (auth !== 'token' && auth !== 'app') throw new UsageError(`--github ${JSON.stringify(auth)}: expected "token" or "app"`);
  if (auth === 'app' && (appId === undefined || !isGitHubAppId(appId))) throw new UsageError('--github app needs --github-app-id N, the GitHub App\'s numeric ID');
  if (auth === 'token' && appId !== undefined) throw new UsageError('--github-app-id goes with --github app');
  if (apiUrl !== undefined && !/^https:\/\/[^\s,/]+(\/[^\s,]*)?$/.test(apiUrl)) throw new UsageError(`--github-api-url ${JSON.stringify(apiUrl)}: expected an https URL`);
  return { auth, ...(appId === undefined ? {} : { appId }), ...(apiUrl === undefined ? {} : { apiUrl }) };
}

/** Google's rules for a project ID, a region and a zone; UsageError naming the rule otherwise. */
export function validatePlace(values: { project?: string | undefined; region?: string | undefined; zone?: string | undefined }): PlanOptions {
  const { project, region } = values;
  if (project === undefined) throw new UsageError('--project is required');
  if (region === undefined) throw new UsageError('--region is required');
  if (!placePatterns.project.test(project)) {
    throw new UsageError(
      `--project ${JSON.stringify(project)}: a project ID is 6 to 30 lower-case letters, digits or hyphens, starting with a letter and not ending with a hyphen`,
    );
  }
  if (!placePatterns.region.test(region)) throw new UsageError(`--region ${JSON.stringify(region)}: expected a region such as us-central1 or europe-west4`);
  const zone = values.zone ?? `${region}-b`;
  if (!new RegExp(`^${region}-[a-z]$`).test(zone)) throw new UsageError(`--zone ${JSON.stringify(zone)}: expected a zone of ${region}, such as ${region}-b`);
  return { project, region, zone };
}

function resumeArgs(options: PlanOptions, kind: 'deploy' | 'teardown'): string {
  const appRegion = options.appRegion === undefined ? '' : ` --app-region ${options.appRegion}`;
  const github = options.github;
  const githubArgs =
    github === undefined ? '' : ` --github ${github.auth}${github.appId === undefined ? '' : ` --github-app-id ${github.appId}`}${github.apiUrl === undefined ? '' : ` --github-api-url ${github.apiUrl}`}`;
  return `--project ${options.project} --region ${options.region} --zone ${options.zone}${appRegion}${githubArgs}${kind === 'teardown' ? ' --yes' : ''}`;
}

/** Runs a plan's commands in order, filling in variables; stops at the first failure. Returns the exit status. */
export async function runPlan(
  commands: readonly Command[],
  options: Pick<DeployDeps, 'exec' | 'writeFile' | 'cwd'> & { io: Io; kind: 'deploy' | 'teardown'; from: number; resume: string },
): Promise<number> {
  const { io } = options;
  const variables = new Map<string, string>();
  let interrupted = false;
  void options.io.interrupted.then(() => (interrupted = true));
  for (const [index, command] of commands.entries()) {
    const number = index + 1;
    if (interrupted) {
      io.stderr(`hermetic: interrupted before command ${number}; resume with: ${options.resume} --from ${number}`);
      return exitCodes.interrupted;
    }
    // Look-ups before the resume point still run: later commands need what they find.
    if (number < options.from && command.sets === undefined) continue;
    const progress = `[${number}/${commands.length}]`;
    const argv = expand(command.argv, variables);
    if (argv === undefined) {
      io.stderr(`${progress} ${command.why}: nothing to do`);
      continue;
    }
    io.stderr(`${progress} ${command.why}`);
    if (command.writes !== undefined) {
      const text = expand([command.writes.text], variables)?.[0] ?? command.writes.text;
      await options.writeFile(join(options.cwd, command.writes.path), text);
    }
    const result = await options.exec(argv, options.cwd);
    if (result.code === 0) {
      if (command.sets !== undefined) {
        const value = result.stdout.trim();
        if (value === '' && options.kind === 'deploy') {
          return failed(io, number, argv, `it printed nothing, and ${command.sets} is needed later`, options.resume);
        }
        variables.set(command.sets, value);
      }
      continue;
    }
    const output = `${result.stderr}\n${result.stdout}`;
    if (command.done === 'exists' && alreadyThere(output)) {
      io.stderr(`${progress} already there`);
      continue;
    }
    if (command.done === 'missing' && alreadyGone(output)) {
      io.stderr(`${progress} already gone`);
      if (command.sets !== undefined) variables.set(command.sets, '');
      continue;
    }
    return failed(io, number, argv, lastLines(result.stderr) || `exit status ${result.code}`, options.resume);
  }
  io.stderr(`hermetic: ${options.kind} done (${commands.length} commands)`);
  return exitCodes.ok;
}

function failed(io: Io, number: number, argv: string[], why: string, resume: string): number {
  io.stderr(`hermetic: command ${number} failed: ${argv.map(quote).join(' ')}\n${why}`);
  io.stderr(`Fix the cause and run again (every step is safe to repeat), or resume with: ${resume} --from ${number}`);
  return exitCodes.failure;
}

/** gcloud's ways of saying a create found its resource there already. */
export function alreadyThere(output: string): boolean {
  return /already exists|ALREADY_EXISTS|you already own it|already contains an App Engine application|database already exists/i.test(output);
}

/** gcloud's ways of saying a delete found nothing to delete. */
export function alreadyGone(output: string): boolean {
  return /NOT_FOUND|not found|does not exist|404|was not found|Policy binding with the specified principal, role, and condition not found/i.test(output);
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-8).join('\n');
}

const reference = /\$\{([A-Z][A-Z0-9_]*)(%%\/\*)?\}/g;

/**
 * Fills in `${NAME}` (and `${NAME%%/*}`, its part before the first `/`) from earlier look-ups. An argument that is
 * a variable alone and holds several lines becomes one argument per line; one that is empty means the command has
 * nothing to act on, and undefined is returned. Throws for a variable no earlier command set.
 */
export function expand(argv: readonly string[], variables: ReadonlyMap<string, string>): string[] | undefined {
  const out: string[] = [];
  for (const arg of argv) {
    const whole = /^\$\{([A-Z][A-Z0-9_]*)\}$/.exec(arg);
    if (whole !== null) {
      const value = lookup(variables, whole[1] ?? '');
      const lines = value.split('\n').map((line) => line.trim()).filter(Boolean);
      if (lines.length === 0) return undefined;
      out.push(...lines);
      continue;
    }
    out.push(arg.replace(reference, (_, name: string, head: string | undefined) => {
      const value = lookup(variables, name);
      return head === undefined ? value : (value.split('/')[0] ?? '');
    }));
  }
  return out;
}

function lookup(variables: ReadonlyMap<string, string>, name: string): string {
  const value = variables.get(name);
  if (value === undefined) throw new Error(`the plan uses \${${name}} before any command sets it`);
  return value;
}

/** One command as a line of shell: single-quoted literals, variables in double quotes, look-ups as `NAME=$(...)`. */
export function shellLine(command: Command): string {
  const line = command.argv.map(quote).join(' ');
  return command.sets === undefined ? line : `${command.sets}=$(${line})`;
}

/** Quotes one argument for a POSIX shell; `${NAME}` references stay live. */
export function quote(arg: string): string {
  if (/^\$\{[A-Z][A-Z0-9_]*\}$/.test(arg)) return arg; // a list (one per line) splits into words, as the runner does
  const parts: string[] = [];
  let last = 0;
  for (const match of arg.matchAll(reference)) {
    if (match.index > last) parts.push(literal(arg.slice(last, match.index)));
    parts.push(`"${match[0]}"`);
    last = match.index + match[0].length;
  }
  if (last < arg.length || parts.length === 0) parts.push(literal(arg.slice(last)));
  return parts.join('');
}

function literal(text: string): string {
  return /^[A-Za-z0-9_\-./=:@,+%]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

function defaultDeps(io: Io): DeployDeps {
  return {
    cwd: projectDir,
    exec: (argv, cwd) =>
      new Promise((resolve) => {
        const [program = '', ...rest] = argv;
        const child = execFile(program, rest, { cwd, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
          resolve({ code, stdout, stderr: error !== null && stderr === '' ? describeError(error) : stderr });
        });
        void io.interrupted.then(() => child.kill('SIGINT'));
      }),
    onPath: async (program) => {
      for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
        if (dir === '') continue;
        try {
          await access(join(dir, program), constants.X_OK);
          return true;
        } catch {
          // not in this one
        }
      }
      return false;
    },
    images: async () => {
      const types = await listHostTypes();
      const tagOf = createTagResolver();
      const images: Array<{ hostType: string; tag: string }> = [];
      for (const type of types) {
        try {
          images.push({ hostType: type.name, tag: await tagOf(type) });
        } catch (error) {
          io.stderr(`hermetic: skipping the ${type.name} image: ${describeError(error)}`);
        }
      }
      return images;
    },
    writeFile: async (path, text) => {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, text);
    },
  };
}
