// Soak: many short builds at once on the embedded default, each allowed one attempt (maxAttempts: 1), so that a
// worker killed by another, a lost exit or a collision shows as an infra failure instead of being retried away.
// Phase 1 runs --sandbox-builds in the process sandbox, phase 2 --container-builds in containers (skipped, saying
// why, without a Docker engine). Then it counts what is left: files in the work directories, worker processes,
// containers. Goals: 0 infra failures, 0 of each leftover. Exits 1 when a goal is missed.
// Usage: node bench/soak.ts [--sandbox-builds N] [--container-builds N] [--builders N]
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { engineProblem } from '../shared/adapters/docker/engine-problem.ts';
import { parseConfig } from '../shared/core/config/config.ts';
import { buildId } from '../shared/core/model/ids.ts';
import type { Build } from '../shared/core/model/types.ts';
import type { Logger } from '../shared/ports/log.ts';
import { collections } from '../shared/ports/state.ts';
import type { LocalRuntime } from '../shared/runtimes/local/local-runtime.ts';
import { createTestRepo, type TestRepo } from '../test/helpers/git-repo.ts';
import { scanProcesses } from '../test/helpers/proc-scan.ts';
import { benchArgs } from './args.ts';
import { startBenchRuntime } from './runtime.ts';

const usage = `Usage: node bench/soak.ts [options]
  --sandbox-builds N     builds in the process sandbox (default 1000)
  --container-builds N   builds in containers, linux-amd64 (default 200; 0 skips)
  --builders N           builders per commit: builds = commits x builders (default 10)
  --help                 this text`;
const values = benchArgs(usage, {
  'sandbox-builds': { type: 'string', default: '1000' },
  'container-builds': { type: 'string', default: '200' },
  builders: { type: 'string', default: '10' },
});
const sandboxBuilds = Number(values['sandbox-builds']);
const containerBuilds = Number(values['container-builds']);
const builderCount = Number(values.builders);
for (const [name, value] of Object.entries({ '--sandbox-builds': sandboxBuilds, '--container-builds': containerBuilds, '--builders': builderCount })) {
  if (!Number.isInteger(value) || value < 0 || (name === '--builders' && value < 1)) {
    process.stderr.write(`${name} must be a whole number${name === '--builders' ? ' of at least 1' : ''}\n${usage}\n`);
    process.exit(2);
  }
}

const dir = await mkdtemp(join(tmpdir(), 'hermetic-bench-soak-'));
const dataDir = join(dir, 'data');
const docker = new Docker();
const noContainers = containerBuilds === 0 ? 'none asked for' : await engineProblem(docker, 3_000);

interface Phase {
  name: 'sandbox' | 'containers';
  hostType: string;
  builds: number;
  repo: TestRepo;
  commits: string[];
}
const phases: Phase[] = [];
for (const [name, hostType, builds] of [
  ['sandbox', 'host', sandboxBuilds],
  ['containers', 'linux-amd64', noContainers === undefined ? containerBuilds : 0],
] as const) {
  if (builds === 0) continue;
  const repo = await createTestRepo(join(dir, name));
  const commits: string[] = [];
  const count = Math.ceil(builds / builderCount);
  process.stderr.write(`soak: ${count} commits for ${name}\n`);
  for (let i = 0; i < count; i++) commits.push(await repo.commit({ 'n.txt': `${i}\n` }, `commit ${i}`));
  phases.push({ name, hostType, builds, repo, commits });
}
if (noContainers !== undefined) process.stderr.write(`soak: no container builds (${noContainers})\n`);

const builderNames = (phase: Phase) => Array.from({ length: builderCount }, (_, i) => `${phase.name}-${i}`);
const catalog = parseConfig(
  {
    repos: phases.map((phase) => ({ name: phase.name, url: phase.repo.path, builders: builderNames(phase), backfill: phase.commits.length })),
    builders: Object.fromEntries(
      phases.flatMap((phase) => builderNames(phase).map((name) => [name, { type: 'command', command: 'cat n.txt', hostType: phase.hostType, maxAttempts: 1 }])),
    ),
  },
  'soak-config.json',
);

const rssSamples: number[] = [];
const sampler = setInterval(() => rssSamples.push(process.memoryUsage().rss), 200);
// Warnings and errors go to stderr, with the first few lines of each: they say why a worker was lost.
const logger: Logger = {
  info: () => {},
  warn: (event, fields = {}) => process.stderr.write(`warn ${event} ${JSON.stringify(fields).slice(0, 600)}\n`),
  error: (event, fields = {}) => process.stderr.write(`error ${event} ${JSON.stringify(fields).slice(0, 600)}\n`),
};
const runtime = await startBenchRuntime(dataDir, catalog, logger);

const rows: string[] = [];
let missed = false;
try {
  for (const phase of phases) {
    const ids = phase.commits.flatMap((commit) => builderNames(phase).map((builder) => buildId(phase.name, commit, builder))).slice(0, phase.builds);
    const began = Date.now();
    await runtime.pollNow([phase.name]);
    await waitWithProgress(runtime, ids, phase.name);
    const seconds = (Date.now() - began) / 1000;
    const builds = (await Promise.all(ids.map((id) => runtime.deps.state.get(collections.builds, id)))).filter((build): build is Build => build !== undefined);
    const byStatus = new Map<string, number>();
    for (const build of builds) byStatus.set(build.status, (byStatus.get(build.status) ?? 0) + 1);
    const infra = builds.filter((build) => build.status === 'infra-failure');
    rows.push(`${phase.name}: ${builds.length} builds in ${seconds.toFixed(0)} s (${((builds.length / seconds) * 60).toFixed(0)}/min): ${[...byStatus].map(([status, n]) => `${n} ${status}`).join(', ')}`);
    rows.push(`${phase.name}: infra failures ${infra.length} (goal 0)${infra.length === 0 ? '' : `; first: ${infra.slice(0, 3).map((build) => build.reason).join(' | ')}`}`);
    if (infra.length > 0 || builds.length !== ids.length || (byStatus.get('passed') ?? 0) !== ids.length) missed = true;
  }
} finally {
  const deployment = (await readFile(join(dataDir, 'deployment-id'), 'utf8').catch(() => '')).trim();
  await runtime.stop();
  clearInterval(sampler);
  const leftoverFiles = await filesUnder(join(dataDir, 'workers'));
  const workRoot = join(dataDir, 'workers');
  const leftoverProcesses = scanProcesses(({ env }) => env.some((entry) => entry.startsWith(`HERMETIC_WORKER=${workRoot}/`))).length;
  const leftoverContainers = deployment === '' ? 0 : (await docker.listContainers({ all: true, filters: { label: [`hermetic.deployment=${deployment}`] } }).catch(() => [])).length;
  rows.push(`peak RSS: ${(Math.max(...rssSamples, process.memoryUsage().rss) / 2 ** 20).toFixed(0)} MiB (this process: the runtime, its dispatcher and the bench)`);
  rows.push(`leftover files in work directories: ${leftoverFiles} (goal 0)`);
  rows.push(`leftover worker processes: ${leftoverProcesses} (goal 0)`);
  rows.push(`leftover containers: ${leftoverContainers} (goal 0)`);
  if (leftoverFiles + leftoverProcesses + leftoverContainers > 0) missed = true;
  await rm(dir, { recursive: true, force: true });
}
for (const row of rows) console.log(row);
process.exit(missed ? 1 : 0);

/** Waits for the builds' verdicts, printing how many are in every 10 s. */
async function waitWithProgress(runtime: LocalRuntime, ids: string[], name: string): Promise<void> {
  const timer = setInterval(() => {
    void runtime.deps.state.query(collections.builds, { where: { repo: name } }).then((builds) => {
      const done = builds.filter((build) => build.reportedAt !== undefined).length;
      process.stderr.write(`soak: ${name}: ${done}/${ids.length} verdicts\n`);
    });
  }, 10_000);
  try {
    await runtime.waitForBuilds(ids, 3_600_000);
  } finally {
    clearInterval(timer);
  }
}

/** Files (not directories) anywhere under `root`. */
async function filesUnder(root: string): Promise<number> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => !entry.isDirectory()).length;
}
