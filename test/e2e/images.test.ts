import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { images } from '../../shared/cli/images.ts';
import type { Io } from '../../shared/cli/io.ts';
import { buildImages, ensureImages, imageTagFor, type BuildReport, type BuiltImage } from '../../shared/images/build-images.ts';
import { checkHostType } from '../../shared/images/check-host-type.ts';
import { createHostProbe } from '../../shared/images/host-probe.ts';
import { describeError } from '../../shared/core/errors.ts';

// Builds the real linux-amd64, linux-386 and linux-amd64-race images once (minutes on a fresh machine, seconds
// after), then runs containers from them. The images are the project's own, tagged by recipe, and are kept like a
// build cache: the runtime and the other end-to-end tests use the same tags, so a test run builds each image once.
// Containers are named hermetic-test-images-* and removed; so are the hermetic/hermetic-test-* images made here.

const docker = new Docker();
const noEngine = await docker.ping().then(
  () => false as const,
  (error: unknown) => `no Docker engine answers (${describeError(error)}); start one (dockerd) to build images`,
);
const wanted = ['linux-amd64', 'linux-386', 'linux-amd64-race'];

interface Run {
  code: number;
  output: string;
}

describe('hermetic images, built for real', { skip: noEngine, timeout: 30 * 60_000 }, () => {
  const containers: string[] = [];
  const progress: string[] = [];
  let scratch: string;
  let first: BuiltImage[];
  let tags: Map<string, string>;
  let skip386: string | false = false;

  /** Runs `script` with sh in a container of `image` (entrypoint overridden), without network. */
  async function shell(image: string, script: string, user = '0'): Promise<Run> {
    return run(image, { Entrypoint: ['sh', '-c'], Cmd: [script], User: user });
  }

  async function run(image: string, options: Docker.ContainerCreateOptions): Promise<Run> {
    const name = `hermetic-test-images-${randomBytes(4).toString('hex')}`;
    containers.push(name);
    const container = await docker.createContainer({
      name,
      Image: image,
      Tty: true,
      Labels: { 'hermetic-test': 'images' },
      HostConfig: { NetworkMode: 'none' },
      ...options,
    });
    await container.start();
    const exit = (await container.wait()) as { StatusCode: number };
    const output = (await container.logs({ stdout: true, stderr: true, follow: false })).toString('utf8');
    await container.remove({ force: true });
    return { code: exit.StatusCode, output };
  }

  /** Removes every hermetic/hermetic-test-* image this test made, children before the parents they are built on. */
  async function removeTestImages(): Promise<void> {
    const made = await docker.listImages({ filters: JSON.stringify({ reference: ['hermetic/hermetic-test-*'] }) });
    for (const image of made.sort((a, b) => b.Created - a.Created)) {
      for (const tag of image.RepoTags ?? []) await docker.getImage(tag).remove().catch(() => {});
    }
  }

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'hermetic-images-e2e-'));
    const available = await checkHostType('linux-386');
    if (!available.available) skip386 = available.reason;
    const report = await buildImages({ docker, hostTypes: wanted, onProgress: (line) => progress.push(line) });
    assert.deepEqual(report.failed, []);
    // Where the kernel runs no 32-bit programs, linux-386 is reported with the probe's reason and the rest is built.
    assert.deepEqual(report.unavailable, available.available ? [] : [{ hostType: 'linux-386', reason: available.reason }]);
    first = report.images;
    tags = new Map(first.map((image) => [image.hostType, image.tag]));
  });

  after(async () => {
    for (const name of containers) await docker.getContainer(name).remove({ force: true }).catch(() => {});
    await removeTestImages();
    await rm(scratch, { recursive: true, force: true });
  });

  it('tags each image by its recipe, and shows progress', async () => {
    for (const image of first) {
      assert.equal(image.tag, await imageTagFor(image.hostType));
      assert.match(image.tag, new RegExp(`^hermetic/${image.hostType}:[0-9a-f]{12}$`));
      const inspected = await docker.getImage(image.tag).inspect();
      assert.equal(inspected.Config.Labels?.['hermetic.host-type'], image.hostType);
    }
    assert.ok(progress.some((line) => /^linux-amd64: hermetic\/linux-amd64:[0-9a-f]{12} (built in [\d.]+ s|is up to date)$/.test(line)), progress.slice(-5).join('\n'));
  });

  it('linux-amd64 has Debian\'s Go for amd64, the builder user, and the agent as its entrypoint', async () => {
    const tag = tags.get('linux-amd64') ?? assert.fail('no linux-amd64 image');
    const go = await shell(tag, 'go version && go env GOARCH CGO_ENABLED && id -u builder && stat -c %u:%g /work && gcc --version | head -1 && git --version');
    assert.equal(go.code, 0, go.output);
    assert.match(go.output, /go version go1\.\d+.* linux\/amd64/);
    assert.match(go.output, /^amd64\r?$/m);
    assert.match(go.output, /^1000\r?$/m);
    assert.match(go.output, /^1000:1000\r?$/m);
    assert.match(go.output, /^gcc /m);
    assert.match(go.output, /^git version /m);

    const help = await shell(tag, '/opt/hermetic/node /opt/hermetic/agent.mjs --help');
    assert.equal(help.code, 0, help.output);
    assert.match(help.output, /--workdir/);
    // The image's own entrypoint, with only the command overridden: the agent's flags plus --help.
    const entrypoint = await run(tag, { Cmd: ['--help'] });
    assert.equal(entrypoint.code, 0, entrypoint.output);
    assert.match(entrypoint.output, /--isolate-steps/);
  });

  it('linux-386 builds and runs 32-bit Go test binaries', async (t) => {
    if (skip386 !== false) return t.skip(skip386);
    const tag = tags.get('linux-386') ?? assert.fail('no linux-386 image');
    const script = [
      'set -e',
      'go env GOARCH',
      'mkdir -p /tmp/m && cd /tmp/m',
      'printf "module m\\n\\ngo 1.19\\n" > go.mod',
      'printf "package m\\n\\nimport (\\n\\t\\"testing\\"\\n\\t\\"unsafe\\"\\n)\\n\\nfunc TestWord(t *testing.T) {\\n\\tif unsafe.Sizeof(uintptr(0)) != 4 {\\n\\t\\tt.Fatal(\\"not 32-bit\\")\\n\\t}\\n}\\n" > m_test.go',
      'HOME=/tmp GOCACHE=/tmp/go-build go test -v .',
    ].join('\n');
    const result = await shell(tag, script, '1000:1000');
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /^386\r?$/m);
    assert.match(result.output, /--- PASS: TestWord/);
  });

  it('builds linux-386 and linux-amd64-race on the linux-amd64 image, adding only their settings', async () => {
    const parent = (await docker.getImage(tags.get('linux-amd64') ?? assert.fail('no linux-amd64 image')).inspect()).Config;
    const own: Record<string, string[]> = { 'linux-386': ['GOARCH=386', 'CGO_ENABLED=0'], 'linux-amd64-race': ['CGO_ENABLED=1', 'GOFLAGS=-race'] };
    for (const [child, env] of Object.entries(own)) {
      const tag = tags.get(child);
      if (tag === undefined) continue; // linux-386 where the kernel runs no 32-bit programs
      const config = (await docker.getImage(tag).inspect()).Config;
      assert.deepEqual(config.Env, [...parent.Env, ...env], child);
      assert.ok(parent.Env.includes('GOTOOLCHAIN=local'));
      assert.deepEqual(config.Entrypoint, parent.Entrypoint, child);
      assert.equal(config.WorkingDir, '/work', child);
      assert.equal(config.Labels?.['hermetic.host-type'], child, 'the child\'s own label, not the parent\'s');
      const agent = await run(tag, { Cmd: ['--help'] });
      assert.equal(agent.code, 0, agent.output);
      assert.match(agent.output, /--isolate-steps/, `${child}: the agent is the entrypoint`);
    }
  });

  it('linux-amd64-race finds a data race', async () => {
    const tag = tags.get('linux-amd64-race') ?? assert.fail('no linux-amd64-race image');
    const racy =
      'package m\n\nimport "testing"\n\nfunc TestRace(t *testing.T) {\n\tn := 0\n\tdone := make(chan bool)\n' +
      '\tgo func() { n++; done <- true }()\n\tn++\n\t<-done\n}\n';
    const script = [
      'set -e',
      'go env CGO_ENABLED GOFLAGS',
      'mkdir -p /tmp/m && cd /tmp/m',
      'printf "module m\\n\\ngo 1.19\\n" > go.mod',
      `printf '%s' '${racy}' > m_test.go`,
      'HOME=/tmp GOCACHE=/tmp/go-build go test . || echo "go test failed"',
    ].join('\n');
    const result = await shell(tag, script, '1000:1000');
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /^1\r?\n-race\r?$/m);
    assert.match(result.output, /WARNING: DATA RACE/);
    assert.match(result.output, /^go test failed\r?$/m);
  });

  it('carries the standard library of each Go configuration, vetted, in the steps\' build cache', async () => {
    // A module that imports fmt: a cold cache vets dozens of std packages for their facts first; a warm one vets
    // the module's own package alone. The step's home, as the agent gives it, is /work/home.
    const script = [
      'set -e',
      'mkdir -p /tmp/m && cd /tmp/m',
      'printf "module m\\n\\ngo 1.18\\n" > go.mod',
      'printf "package m\\n\\nimport \\"fmt\\"\\n\\n// Hello greets.\\nfunc Hello() string { return fmt.Sprint(\\"hello\\") }\\n" > m.go',
      // go re-dates an entry it uses once its date is an hour old, which in a container copies the file out of the layer.
      'echo "entries go would re-date: $(find /work/home/.cache/go-build -type f ! -name trim.txt ! -newermt 2099-01-01 | wc -l)"',
      'echo "vet runs: $(HOME=/work/home GOPROXY=off go vet -x ./... 2>&1 | grep -c \'/vet .*vet.cfg$\')"',
      'echo "cold vet runs: $(HOME=/tmp/cold GOPROXY=off go vet -x ./... 2>&1 | grep -c \'/vet .*vet.cfg$\')"',
    ].join('\n');
    for (const hostType of wanted) {
      const tag = tags.get(hostType);
      if (tag === undefined) continue; // linux-386 where the kernel runs no 32-bit programs
      const result = await shell(tag, script, '1000:1000');
      assert.equal(result.code, 0, result.output);
      assert.match(result.output, /^vet runs: 1\r?$/m, `${hostType}: ${result.output}`);
      assert.match(result.output, /^entries go would re-date: 0\r?$/m, `${hostType}: ${result.output}`);
      const cold = Number(/^cold vet runs: (\d+)/m.exec(result.output)?.[1]);
      assert.ok(cold > 10, `${hostType}: an empty cache vets std first (${cold} runs), so the warm figure means something`);
    }
  });

  it('builds a missing parent first, once, and the child on it', async () => {
    const envDir = join(scratch, 'env-family');
    // A fresh comment in the parent gives fresh tags, so nothing left by an earlier run counts as built.
    const nonce = randomBytes(6).toString('hex');
    const recipes: Record<string, { from?: string; dockerfile: string }> = {
      'hermetic-test-parent': { dockerfile: `# ${nonce}\nARG BASE\nFROM \${BASE}\nRUN echo parent > /parent.txt\nENV FROM_PARENT=1\n` },
      'hermetic-test-child': { from: 'hermetic-test-parent', dockerfile: 'ARG BASE\nFROM ${BASE}\nENV FROM_CHILD=1\n' },
      'hermetic-test-grandchild': { from: 'hermetic-test-child', dockerfile: 'ARG BASE\nFROM ${BASE}\nRUN cat /parent.txt\n' },
    };
    for (const [name, recipe] of Object.entries(recipes)) {
      await mkdir(join(envDir, name), { recursive: true });
      const from = recipe.from === undefined ? {} : { from: recipe.from };
      await writeFile(join(envDir, name, 'host-type.json'), JSON.stringify({ description: name, platform: 'linux/amd64', ...from }));
      await writeFile(join(envDir, name, 'Dockerfile'), recipe.dockerfile);
    }
    const lines: string[] = [];
    const built = (await buildImages({ docker, envDir, hostTypes: ['hermetic-test-grandchild', 'hermetic-test-child'], onProgress: (line) => lines.push(line) })).images;
    assert.deepEqual(built.map((image) => [image.hostType, image.built]), [['hermetic-test-grandchild', true], ['hermetic-test-child', true]]);
    const made = lines.filter((line) => / built in /.test(line)).map((line) => line.split(':')[0]);
    assert.deepEqual(made, ['hermetic-test-parent', 'hermetic-test-child', 'hermetic-test-grandchild'], 'each once, parents first');
    const parentTag = await imageTagFor('hermetic-test-parent', { envDir });
    const childTag = await imageTagFor('hermetic-test-child', { envDir });
    assert.ok(lines.includes(`hermetic-test-child: building ${childTag} (linux/amd64) from ${parentTag}`), lines.join('\n'));

    const grandchild = await shell(built[0]?.tag ?? assert.fail('no grandchild'), 'cat /parent.txt; echo "$FROM_PARENT$FROM_CHILD"');
    assert.equal(grandchild.code, 0, grandchild.output);
    assert.match(grandchild.output, /^parent\r?\n11\r?$/m);

    const again = await buildImages({ docker, envDir, hostTypes: ['hermetic-test-grandchild'], onProgress: () => {} });
    assert.deepEqual(again.images.map((image) => image.built), [false]);
  });

  it('builds nothing the second time, fast', async () => {
    const startedAt = performance.now();
    const again = await buildImages({ docker, hostTypes: [...tags.keys()], onProgress: () => {} });
    const seconds = (performance.now() - startedAt) / 1000;
    assert.deepEqual(
      again.images.map((image) => [image.hostType, image.tag, image.built]),
      first.map((image) => [image.hostType, image.tag, false]),
    );
    assert.ok(seconds < 15, `an unchanged rebuild took ${seconds.toFixed(1)} s`);
    assert.deepEqual(await ensureImages({ docker, hostTypes: [...tags.keys()] }), tags);
  });

  it('prints only JSON on stdout with --json', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io: Io = { cwd: scratch, stdout: (text) => out.push(text), stderr: (text) => err.push(text), interrupted: new Promise(() => {}) };
    assert.equal(await images(['build', 'linux-amd64', '--json'], io), 0);
    const printed = JSON.parse(out.join('\n')) as BuildReport;
    assert.deepEqual(printed.images.map((image) => [image.hostType, image.tag, image.built]), [['linux-amd64', tags.get('linux-amd64'), false]]);
    assert.deepEqual([printed.unavailable, printed.failed], [[], []]);
    assert.ok(err.some((line) => line.includes('is up to date')));
  });

  it('builds every host type this machine can run, and reports the ones it cannot with the probe\'s reason', async () => {
    const lines: string[] = [];
    const why = 'this kernel cannot run 32-bit x86 programs (exec failed with ENOEXEC)';
    const probe = { ...createHostProbe(), run32Bit: async () => why };
    const report = await buildImages({ docker, hostTypes: ['linux-386', 'linux-amd64'], probe, onProgress: (line) => lines.push(line) });
    assert.deepEqual(report.unavailable, [{ hostType: 'linux-386', reason: `not available on this host: ${why}` }]);
    assert.deepEqual(report.images.map((image) => [image.hostType, image.tag, image.built]), [['linux-amd64', tags.get('linux-amd64'), false]]);
    assert.deepEqual(report.failed, []);
    assert.ok(lines.includes(`linux-386: skipped: not available on this host: ${why}`), lines.join('\n'));
  });

  it('names the failing step and shows its output when a build fails', async () => {
    const envDir = join(scratch, 'env');
    const recipe = join(envDir, 'hermetic-test-broken');
    await mkdir(recipe, { recursive: true });
    await writeFile(join(recipe, 'host-type.json'), JSON.stringify({ description: 'a recipe that fails', platform: 'linux/amd64' }));
    await writeFile(join(recipe, 'Dockerfile'), 'ARG BASE\nFROM ${BASE}\nRUN echo "about to fail" && exit 3\n');
    const report = await buildImages({ docker, envDir, onProgress: () => {} });
    assert.deepEqual(report.images, []);
    const [failed] = report.failed;
    assert.equal(failed?.hostType, 'hermetic-test-broken');
    const reason = failed?.reason ?? '';
    assert.match(reason, /^docker build failed at "Step 3\/\d+ : RUN echo "about to fail" && exit 3"/);
    assert.match(reason, /non-zero code: 3/);
    assert.match(reason, /^about to fail$/m);
    assert.doesNotMatch(reason, /intermediate container/, 'the engine\'s own chatter is left out');
    const left = await docker.listImages({ filters: JSON.stringify({ reference: ['hermetic/hermetic-test-broken'] }) });
    assert.deepEqual(left, []);

    const child = join(envDir, 'hermetic-test-broken-child');
    await mkdir(child);
    await writeFile(join(child, 'host-type.json'), JSON.stringify({ description: 'built on one that fails', platform: 'linux/amd64', from: 'hermetic-test-broken' }));
    await writeFile(join(child, 'Dockerfile'), 'ARG BASE\nFROM ${BASE}\nENV NEVER=1\n');
    // One that builds, named after the broken one: a failure stops nothing else.
    const fine = join(envDir, 'hermetic-test-fine');
    await mkdir(fine);
    await writeFile(join(fine, 'host-type.json'), JSON.stringify({ description: 'a recipe that builds', platform: 'linux/amd64' }));
    await writeFile(join(fine, 'Dockerfile'), `ARG BASE\nFROM \${BASE}\nENV FINE=${randomBytes(6).toString('hex')}\n`);
    const mixed = await buildImages({ docker, envDir, hostTypes: ['hermetic-test-broken-child', 'hermetic-test-fine'], onProgress: () => {} });
    assert.deepEqual(mixed.failed.map((each) => each.hostType), ['hermetic-test-broken-child']);
    assert.match(mixed.failed[0]?.reason ?? '', /^its parent could not be built: hermetic-test-broken: docker build failed at "Step 3\/\d+ : RUN echo/);
    assert.deepEqual(mixed.images.map((image) => [image.hostType, image.built]), [['hermetic-test-fine', true]]);
  });
});
