// The pipeline's own overhead per task on the embedded default, with real workers in the process sandbox:
//   queue to worker start: the task is queued (plan) -> its worker is running (launch returned from compute.start)
//   worker exit to verdict: the agent finished its last step -> the build's verdict is committed
// The worker's own run (agent boot, source download, steps, uploads) is reported beside them, not in them.
// Builds run one at a time so the figures are not queueing behind each other.
// Usage: node bench/pipeline-overhead.ts [--builds N]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseConfig } from '../shared/config/config.ts';
import { silentLogger } from '../shared/ports/log.ts';
import { collections } from '../shared/ports/state.ts';
import { startLocalRuntime } from '../shared/runtime/local-runtime.ts';
import { createTestRepo } from '../test/helpers/git-repo.ts';
import { describe, median } from './stats.ts';

const { values } = parseArgs({ options: { builds: { type: 'string', default: '20' } } });
const builds = Number(values.builds);

const dir = await mkdtemp(join(tmpdir(), 'hermetic-bench-overhead-'));
const repo = await createTestRepo(join(dir, 'repo'));
await repo.commit({ 'README': 'bench\n' }, 'first');
const catalog = parseConfig(
  { repos: [{ name: 'bench', url: repo.path, branches: ['main'], backfill: 1 }], builders: { noop: { type: 'command', command: 'true' } } },
  'bench-config.json',
);
const runtime = await startLocalRuntime({ dataDir: join(dir, 'data'), catalog, logger: silentLogger, pollIntervalMs: 0, port: 0 });

const toStart: number[] = [];
const toVerdict: number[] = [];
const workerRun: number[] = [];
const total: number[] = [];
process.stderr.write(`pipeline overhead: ${builds} builds, one at a time, process sandbox (${runtime.compute.hostTypes.join(', ')})\n`);
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
  toVerdict.push(build.finishedAt - task.workerFinishedAt);
  workerRun.push(task.workerFinishedAt - task.launchedAt);
  total.push(build.finishedAt - begin);
}
await runtime.stop();
await rm(dir, { recursive: true, force: true });

console.log(`queue to worker start:   ${describe(toStart, 'ms')}`);
console.log(`worker exit to verdict:  ${describe(toVerdict, 'ms')}`);
console.log(`overhead per task:       ${(median(toStart) + median(toVerdict)).toFixed(1)} ms (sum of the medians; target < 50 ms: ${median(toStart) + median(toVerdict) < 50 ? 'met' : 'NOT met'})`);
console.log(`worker's own run:        ${describe(workerRun, 'ms')} (agent boot, source download, steps, uploads; not overhead)`);
console.log(`poll to verdict:         ${describe(total, 'ms')}`);
