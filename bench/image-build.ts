// How long a host type's image takes to build from nothing (the Debian base with mmdebstrap, then the image), and
// how long `images build` takes when nothing changed (it should be about instant: bundle the agent, hash, look up
// the tag). Fresh tags come from a scratch salt, so nothing is cached and the project's own images are untouched;
// the salted images are removed at the end.
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import { buildImages, imageTagFor } from '../shared/images/build-images.ts';
import { debianSuite } from '../shared/images/debian-suite.ts';
import { baseRecipeFor, baseTag } from '../shared/images/recipe.ts';
import { findHostType } from '../shared/images/host-types.ts';
import { benchArgs } from './args.ts';
import { describe } from './stats.ts';
import { describeError } from '../shared/core/errors.ts';

const usage = `Usage: node bench/image-build.ts [options]
  --host-type NAME   the host type whose image is built (default linux-amd64)
  --cold-runs N      builds from nothing (default 1)
  --warm-runs N      builds with nothing changed (default 5)
  --verbose          the builds' progress on stderr
  --help             this text`;
const values = benchArgs(usage, {
  'host-type': { type: 'string', default: 'linux-amd64' },
  'cold-runs': { type: 'string', default: '1' },
  'warm-runs': { type: 'string', default: '5' },
  verbose: { type: 'boolean', default: false },
});
const hostType = values['host-type'];
const coldRuns = Number(values['cold-runs']);
const warmRuns = Number(values['warm-runs']);

const docker = new Docker();
try {
  await docker.ping();
} catch (error) {
  process.stderr.write(`bench: no Docker engine answers (${describeError(error)}); nothing to measure\n`);
  process.exit(1);
}
const type = await findHostType(hostType);
const suite = await debianSuite();
const onProgress = (line: string) => {
  if (values.verbose) process.stderr.write(`${line}\n`);
};

const cold: number[] = [];
const bases: number[] = [];
const warm: number[] = [];
for (let run = 0; run < coldRuns; run++) {
  const salt = `bench-${randomBytes(6).toString('hex')}`;
  const made: string[] = [];
  try {
    let baseSeconds = Number.NaN;
    const startedAt = performance.now();
    const report = await buildImages({
      docker,
      hostTypes: [hostType],
      salt,
      onProgress: (line) => {
        const base = /^base \S+: \S+ made in ([\d.]+) s$/.exec(line);
        if (base?.[1] !== undefined) baseSeconds = Number(base[1]);
        onProgress(line);
      },
    });
    cold.push((performance.now() - startedAt) / 1000);
    bases.push(baseSeconds);
    const [image] = report.images;
    const [notBuilt] = [...report.unavailable, ...report.failed];
    if (image === undefined) throw new Error(`${hostType} was not built: ${notBuilt?.reason ?? 'no reason given'}`);
    // The image, every parent it was built on (children first), then the base: all salted, all removed after.
    for (let each: typeof type | undefined = type; each !== undefined; each = each.parent) {
      made.push(await imageTagFor(each.name, { salt }));
    }
    made.push(baseTag(baseRecipeFor(suite, type.arch, salt)));
    if (run === 0) {
      for (let warmRun = 0; warmRun < warmRuns; warmRun++) {
        const again = performance.now();
        const [same] = (await buildImages({ docker, hostTypes: [hostType], salt, onProgress })).images;
        if (same?.built !== false) throw new Error('an unchanged recipe was built again');
        warm.push((performance.now() - again) / 1000);
      }
    }
  } finally {
    for (const tag of made) await docker.getImage(tag).remove().catch((error: unknown) => process.stderr.write(`bench: could not remove ${tag}: ${describeError(error)}\n`));
  }
}

const cpus = (await docker.info()) as { NCPU?: number };
console.log(`image build, ${hostType} (${suite}/${type.arch}, ${cpus.NCPU ?? '?'} CPUs on the engine):`);
console.log(`  cold, nothing cached (base + image): ${describe(cold, 's')}`);
console.log(`    of which the base (mmdebstrap + docker load): ${describe(bases, 's')}`);
console.log(`  unchanged rebuild (tag exists):      ${describe(warm.map((seconds) => seconds * 1000), 'ms')}`);
