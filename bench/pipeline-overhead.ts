// The pipeline's own overhead per task on the embedded default, with real workers:
//   queue to worker start: the task is queued (plan) -> its worker is running (launch returned from compute.start)
//   worker start to agent start: the process or container boots and the agent's Node starts
//   worker exit to verdict: the agent finished its last step -> the build's verdict is committed
// Targets: in the process sandbox, queue to worker start plus exit to verdict under 50 ms (the worker's own boot
// excluded); in containers, queue to the agent running plus exit to verdict under 1 s (container boot included).
// Builds run one at a time so the figures are not queueing behind each other. --host-type linux-amd64 runs the
// workers in containers (a Docker engine and the image are needed; the image is built first if missing).
// Usage: node bench/pipeline-overhead.ts [--builds N] [--host-type host|linux-amd64|...]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../shared/core/config/config.ts';
import { collections } from '../shared/ports/state.ts';
import { createTestRepo } from '../test/helpers/git-repo.ts';
import { benchArgs } from './args.ts';
import { startBenchRuntime } from './runtime.ts';
import { describe, median } from './stats.ts';

const usage = `Usage: node bench/pipeline-overhead.ts [options]
  --builds N         builds, one at a time (default 20)
  --host-type NAME   host: the process sandbox; linux-amd64: containers (default host)
  --help             this text`;
const values = benchArgs(usage, { builds: { type: 'string', default: '20' }, 'host-type': { type: 'string', default: 'host' } });
const builds = Number(values.builds);
const hostType = values['host-type'];

const dir = await mkdtemp(join(tmpdir(), 'hermetic-bench-overhead-'));
const repo = await createTestRepo(join(dir, 'repo'));
await repo.commit({ 'README': 'bench\n' }, 'first');
const catalog = parseConfig(
  { repos: [{ name: 'bench', url: repo.path, branches: ['main'], backfill: 1 }], builders: { noop: { type: 'command', command: 'true', hostType } } },
  'bench-config.json',
);
const runtime = await startBenchRuntime(join(dir, 'data'), catalog);

const toStart: number[] = [];
const toAgent: number[] = [];
const toVerdict: number[] = [];
const workerRun: number[] = [];
const total: number[] = [];
process.stderr.write(`pipeline overhead: ${builds} builds, one at a time, on ${hostType}\n`);
for (let i = 0; i <= builds; i++) {
  if (i > 0) await repo.commit({ 'README': `bench ${i}\n` }, `commit ${i}`);
  const begin = Date.now();
  const poll = await runtime.pollNow();
  const [requested] = poll.requested;
  if (requested === undefined) throw new Error('the poll found no new commit');
  await runtime.waitForBuilds([requested.buildId], 60_000);
  const build = await runtime.deps.state.get(collections.builds, requested.buildId);
  const task = build?.taskId === undefined ? undefined : await runtime.deps.state.get(collections.tasks, build.taskId);
  if (build?.status !== 'passed' || task?.launchedAt === undefined || task.startedAt === undefined || task.workerFinishedAt === undefined || build.finishedAt === undefined) {
    throw new Error(`build ${requested.buildId} did not pass cleanly: ${JSON.stringify({ build, task })}`);
  }
  if (i === 0) continue; // warm-up: the first build also creates the git mirror
  toStart.push(task.launchedAt - task.createdAt);
  toAgent.push(task.startedAt - task.launchedAt);
  toVerdict.push(build.finishedAt - task.workerFinishedAt);
  workerRun.push(task.workerFinishedAt - task.startedAt);
  total.push(build.finishedAt - begin);
}
await runtime.stop();
await rm(dir, { recursive: true, force: true });

const controlPlane = median(toStart) + median(toVerdict);
const launchToAgent = median(toStart) + median(toAgent) + median(toVerdict);
console.log(`queue to worker start:       ${describe(toStart, 'ms')}`);
console.log(`worker start to agent start: ${describe(toAgent, 'ms')} (process or container boot, Node boot)`);
console.log(`worker exit to verdict:      ${describe(toVerdict, 'ms')}`);
console.log(`agent's own run:             ${describe(workerRun, 'ms')} (source download, steps, uploads; not overhead)`);
console.log(`poll to verdict:             ${describe(total, 'ms')}`);
if (hostType === 'host') {
  console.log(`overhead per task:           ${controlPlane.toFixed(1)} ms (queue to worker start + exit to verdict; target < 50 ms: ${controlPlane < 50 ? 'met' : 'NOT met'})`);
} else {
  console.log(`overhead per task:           ${launchToAgent.toFixed(1)} ms (queue to agent start + exit to verdict; target < 1000 ms: ${launchToAgent < 1000 ? 'met' : 'NOT met'})`);
}
