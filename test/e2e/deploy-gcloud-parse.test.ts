import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { deployPlan, lifecycleFile, teardownPlan, type Command, type PlanOptions } from '../../shared/runtimes/google-cloud/deploy-plan.ts';
import { expand, shellLine } from '../../shared/cli/deploy.ts';
import { startGcloudRunner, type GcloudRun, type GcloudRunner } from '../helpers/gcloud-parse.ts';

/**
 * Every gcloud command of the deploy and teardown plans, through the real gcloud's own argument parser: a wrong flag,
 * a flag in the wrong place or a value gcloud cannot resolve fails here, in gcloud's words, not halfway through a real
 * deploy. gcloud runs with an empty configuration and home for each command, so no account is signed in and no
 * default project is set: a command whose arguments parse stops at authentication (one that needs no account
 * succeeds), and an argument that silently leans on a default project fails as it would in a project without one.
 */

const gcloud = (process.env['PATH'] ?? '').split(delimiter).map((dir) => join(dir, 'gcloud')).find((path) => path !== 'gcloud' && existsSync(path));
const projectDir = fileURLToPath(new URL('../../', import.meta.url));

const place = { project: 'hermetic-parse-1', region: 'europe-west4', zone: 'europe-west4-a' } as const;
const images = [
  { hostType: 'linux-amd64', tag: 'hermetic/linux-amd64:0123456789ab' },
  { hostType: 'linux-arm64', tag: 'hermetic/linux-arm64:ba9876543210' },
];
const variants: Array<[string, Partial<PlanOptions>]> = [
  ['without GitHub', {}],
  ['with --github token', { github: { auth: 'token' } }],
  ['with --github app', { github: { auth: 'app', appId: '123456', apiUrl: 'https://github.example.com/api/v3' } }],
];
const plans = variants.flatMap(([label, options]) => [
  [`deploy ${label}, with images`, deployPlan({ ...place, ...options, images })] as const,
  [`teardown ${label}`, teardownPlan({ ...place, ...options })] as const,
]);

/** What the look-ups would have found in a real project: a value of the right shape for every variable a plan sets. */
function lookedUp(commands: readonly Command[]): Map<string, string> {
  const values = new Map<string, string>([
    ['PROJECT_NUMBER', '123456789012'],
    ['STORAGE_AGENT', 'service-123456789012@gs-project-accounts.iam.gserviceaccount.com'],
    ['IMAGE_REPO', `${place.region}-docker.pkg.dev/${place.project}/hermetic`],
    ['DASHBOARD_HOST', `${place.project}.ez.r.appspot.com`],
    ['WEBHOOK_URL', 'https://webhook-5bq3cpd6ya-ez.a.run.app'],
    ['WORKERS', 'hermetic-0123456789abcdef01234567\nhermetic-89abcdef0123456789abcdef'],
  ]);
  for (const { sets } of commands) {
    const service = sets?.replace(/^(TRIGGER|SUB)_/, '').toLowerCase().replace(/_/g, '-');
    if (sets?.startsWith('TRIGGER_')) values.set(sets, `${service}-652315`);
    if (sets?.startsWith('SUB_')) values.set(sets, `eventarc-${place.region}-${service}-652315-sub-217`);
  }
  return values;
}

/** The gcloud commands of a plan, its variables filled in. */
function gcloudArgvs(commands: readonly Command[]): string[][] {
  const variables = lookedUp(commands);
  return commands.flatMap((command) => {
    const argv = expand(command.argv, variables);
    assert.ok(argv, `${shellLine(command)} expands to nothing`);
    return argv[0] === 'gcloud' ? [argv] : [];
  });
}

/** Undefined when gcloud took the arguments; else the command and why not, in gcloud's words. */
function problemOf(argv: readonly string[], run: GcloudRun): string | undefined {
  if (run.code === 0) return undefined;
  // "(gcloud.functions.deploy) You do not currently have an active account selected.": the command itself ran.
  const reached = /^ERROR: \(([a-z0-9_.-]+)\) You do not currently have an active account selected\./m.exec(run.stderr);
  const path = reached?.[1]?.split('.') ?? [];
  if (reached !== null && path.every((word, index) => argv[index] === word.replace(/_/g, '-'))) return undefined;
  return `${shellLine({ argv: [...argv], why: '' })}\n  exit ${run.code}: ${run.stderr.trim().split('\n').slice(0, 6).join('\n  ')}`;
}

describe('every gcloud command of deploy and teardown parses with the real gcloud', { skip: gcloud === undefined ? 'gcloud is not on PATH (install the Google Cloud CLI to run this test)' : false, timeout: 10 * 60_000 }, () => {
  let work: string;
  let runner: GcloudRunner;
  /** Why the plans' beta commands cannot be checked here, or false: a gcloud installed without its beta component. */
  let noBeta: string | false = false;
  /** Each distinct argument vector runs once, whichever plans hold it. */
  const runs = new Map<string, Promise<GcloudRun>>();
  const run = (argv: readonly string[]) => {
    const key = JSON.stringify(argv);
    const found = runs.get(key) ?? runner.run(argv);
    runs.set(key, found);
    return found;
  };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'hermetic-gcloud-parse-'));
    // Where the commands run, as the checkout is in a real deploy: the files they name are there.
    const cwd = join(work, 'cwd');
    await mkdir(join(cwd, dirname(lifecycleFile)), { recursive: true });
    await copyFile(join(projectDir, lifecycleFile), join(cwd, lifecycleFile));
    for (const [, commands] of plans) {
      const variables = lookedUp(commands);
      for (const { writes } of commands) {
        if (writes === undefined) continue;
        await mkdir(join(cwd, dirname(writes.path)), { recursive: true });
        await writeFile(join(cwd, writes.path), expand([writes.text], variables)?.[0] ?? '');
      }
    }
    runner = await startGcloudRunner({
      gcloud: gcloud ?? 'gcloud',
      cwd,
      scratch: work,
      concurrency: 2,
      preload: plans.flatMap(([, commands]) => gcloudArgvs(commands)),
    });
    const beta = await runner.spawned(['gcloud', 'beta', '--help']);
    if (beta.code !== 0) noBeta = `this gcloud has no beta component (gcloud components install beta): ${beta.stderr.trim().split('\n')[0] ?? ''}`;
  });
  after(async () => {
    await runner?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  /** Fails, listing each in gcloud's words, when gcloud refused any of `argvs`. */
  async function refused(argvs: readonly string[][]): Promise<void> {
    const problems = (await Promise.all(argvs.map(async (argv) => problemOf(argv, await run(argv))))).filter((problem) => problem !== undefined);
    assert.deepEqual(problems, [], `gcloud refused ${problems.length} of ${argvs.length} commands:\n${problems.join('\n')}`);
  }
  const isBeta = (argv: readonly string[]) => argv[1] === 'beta';

  for (const [label, commands] of plans) {
    it(label, async (t) => {
      t.diagnostic(`gcloud runs ${runner.how}`);
      const argvs = gcloudArgvs(commands).filter((argv) => !isBeta(argv));
      assert.ok(argvs.length > 20);
      await refused(argvs);
    });
  }

  it('the plans\' beta commands parse too', async (t) => {
    if (noBeta !== false) return t.skip(noBeta);
    const argvs = plans.flatMap(([, commands]) => gcloudArgvs(commands).filter(isBeta));
    assert.ok(argvs.length > 0, 'deploy uses a beta command');
    await refused(argvs);
  });

  it('catches an unknown flag and a topic that leans on a default project, as gcloud itself does', async () => {
    const bareTopic = ['gcloud', 'scheduler', 'jobs', 'create', 'pubsub', 'hermetic-poll', `--location=${place.region}`, '--schedule=* * * * *', '--topic=poll-tick', '--project', place.project];
    const misspelt = ['gcloud', 'functions', 'deploy', 'poll', '--gen2', '--memroy=256Mi', '--project', place.project];
    const fine = ['gcloud', 'pubsub', 'topics', 'create', 'poll-tick', '--project', place.project];
    for (const [argv, expected] of [[bareTopic, /projectsId/], [misspelt, /unrecognized arguments: --memroy/], [fine, undefined]] as const) {
      const [forked, spawned] = await Promise.all([runner.run(argv), runner.spawned(argv)]);
      assert.deepEqual(forked, spawned, 'a forked gcloud answers as gcloud does');
      if (expected === undefined) assert.equal(problemOf(argv, forked), undefined);
      else assert.match(problemOf(argv, forked) ?? '', expected);
    }
  });
});
