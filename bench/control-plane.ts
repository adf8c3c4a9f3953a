// How many tasks per second the control plane schedules: 500 commits x 4 builders, from one poll to the 2,000th
// worker start, on the embedded default's real SQLite state and queue. Workers are not run (a compute adapter that
// only records starts) and commits come from an in-memory source, so the figure is the control plane's own.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../shared/core/config/config.ts';
import { createFakeSource } from '../test/fakes/fake-source.ts';
import { createParkedCompute, startParkedRuntime } from './parked-compute.ts';
import { benchArgs } from './args.ts';
import { describe, median } from './stats.ts';

const usage = `Usage: node bench/control-plane.ts [options]
  --runs N       runs, each on a fresh data directory (default 5)
  --commits N    commits in the one poll (default 500)
  --builders N   builders per commit (default 4)
  --help         this text`;
const values = benchArgs(usage, {
  runs: { type: 'string', default: '5' },
  commits: { type: 'string', default: '500' },
  builders: { type: 'string', default: '4' },
});
const runs = Number(values.runs);
const commits = Number(values.commits);
const builderCount = Number(values.builders);
const tasks = commits * builderCount;

async function once(): Promise<{ seconds: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'hermetic-bench-cp-'));
  const source = createFakeSource();
  for (let i = 0; i < commits; i++) source.push('bench', 'main');
  const builders = Object.fromEntries(
    Array.from({ length: builderCount }, (_, i) => [`b${i}`, { type: 'command', command: 'true' }]),
  );
  const catalog = parseConfig(
    { repos: [{ name: 'bench', url: '/bench', branches: ['main'], backfill: commits }], builders },
    'bench-config.json',
  );
  let done = () => {};
  const allStarted = new Promise<void>((resolve) => (done = resolve));
  const compute = createParkedCompute((started) => {
    if (started === tasks) done();
  });
  const runtime = await startParkedRuntime(dir, catalog, source, compute);
  const begin = performance.now();
  await runtime.pollNow();
  await allStarted;
  const seconds = (performance.now() - begin) / 1000;
  await runtime.stop();
  await rm(dir, { recursive: true, force: true });
  return { seconds };
}

process.stderr.write(`control plane: ${commits} commits x ${builderCount} builders = ${tasks} tasks, ${runs} runs\n`);
const rates: number[] = [];
for (let run = 1; run <= runs; run++) {
  const { seconds } = await once();
  rates.push(tasks / seconds);
  process.stderr.write(`  run ${run}: ${seconds.toFixed(2)} s, ${(tasks / seconds).toFixed(0)} tasks/s\n`);
}
console.log(`control plane scheduling: ${describe(rates, 'tasks/s')}`);
console.log(`target > 1000 tasks/s: ${median(rates) > 1000 ? 'met' : 'NOT met'}`);
