import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { c as createTar } from 'tar';
import { engineProblem } from '../../shared/adapters/docker/engine-problem.ts';
import { programsNotOnPath } from '../../shared/adapters/local/programs-on-path.ts';
import { makeBaseImage } from '../../shared/images/base-image.ts';
import { debianSuite } from '../../shared/images/debian-suite.ts';
import { followDockerStream } from '../../shared/images/docker-stream.ts';
import { hostArch } from '../../shared/images/host-probe.ts';
import { imageExists } from '../../shared/images/image-exists.ts';
import { baseRecipeFor, baseTag } from '../../shared/images/recipe.ts';
import { describeError } from '../../shared/core/errors.ts';

// The README's first command, run as a newcomer would: on a fresh Debian machine of this one's suite that has only
// Node.js and npm from Debian (a container made from Debian's packages, with no git, no Go and no Docker engine), in
// a copy of this checkout. It must install what it lacks and give the example's three commits their real verdicts.
// The machine's npm registry settings (its registry, its CA file) go along, as any machine of this kind has them.

const run = promisify(execFile);
const projectDir = fileURLToPath(new URL('../../', import.meta.url));
const docker = new Docker();
const noEngine = await engineProblem(docker, 3000).then((problem) => (problem === undefined ? false : `needs a Docker engine (${problem}); .ci/run starts one`));
/** The Debian base the fresh machine is made from: this machine's suite and architecture. */
const baseRecipe = await debianSuite().then(
  (suite) => baseRecipeFor(suite, hostArch()),
  (error: unknown) => describeError(error),
);
/** Why the fresh machine cannot be made here, or false. */
const cannotMake =
  noEngine ||
  (typeof baseRecipe === 'string'
    ? `needs a Debian machine: ${baseRecipe}`
    : !(await imageExists(docker, baseTag(baseRecipe))) && (await programsNotOnPath(['mmdebstrap'], process.env.PATH ?? '')).length > 0
      ? 'needs mmdebstrap to make the Debian base image (apt-get install mmdebstrap; .ci/run installs it)'
      : false);

/** The first command of the README's "Two commands", as written there. */
async function readmeFirstCommand(): Promise<string> {
  const readme = await readFile(new URL('README.md', `file://${projectDir}`), 'utf8');
  const block = /## Two commands[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1];
  const line = block?.split('\n').find((candidate) => candidate.trim() !== '');
  assert.ok(line, 'the README has a "Two commands" block');
  return line.replace(/\s+#.*$/, '').trim();
}

/** The fresh machine: Debian's minbase for this machine's suite, plus Debian's nodejs and npm, nothing else. */
async function freshMachineImage(): Promise<string> {
  if (typeof baseRecipe === 'string') throw new Error(baseRecipe);
  const base = await makeBaseImage({ docker, recipe: baseRecipe, onProgress: () => {} });
  const dockerfile = [
    'ARG BASE',
    'FROM ${BASE}',
    'RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null && rm -rf /var/lib/apt/lists/*',
    '',
  ].join('\n');
  const tag = `hermetic-test/fresh-debian:${createHash('sha256').update(`${base.tag}\n${dockerfile}`).digest('hex').slice(0, 12)}`;
  if (await imageExists(docker, tag)) return tag;
  const stream = await docker.buildImage(await tarOf({ Dockerfile: dockerfile }), { t: tag, buildargs: { BASE: base.tag }, rm: true, forcerm: true, version: '1' });
  const outcome = await followDockerStream(stream, () => {});
  if (outcome.error !== undefined) throw new Error(`the fresh machine image did not build: ${outcome.error}\n${outcome.tail.join('\n')}`);
  return tag;
}

/** A tar stream of files given by path (relative, as they land) and text, made in a scratch folder. */
async function tarOf(files: Record<string, string>): Promise<Readable> {
  const dir = await mkdtemp(join(tmpdir(), 'hermetic-fresh-'));
  scratch.push(dir);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return Readable.from(createTar({ cwd: dir, portable: true }, Object.keys(files)));
}
const scratch: string[] = [];

/** The machine's npm settings that reach its registry, as environment for npm in the container, and its CA file. */
async function registrySettings(): Promise<{ env: string[]; caFile: string | undefined }> {
  const get = async (key: string) => (await run('npm', ['config', 'get', key], { cwd: projectDir })).stdout.trim();
  const [registry, caFile] = await Promise.all([get('registry'), get('cafile')]);
  const proxies = ['HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'https_proxy', 'http_proxy', 'no_proxy'].flatMap((name) => {
    const value = process.env[name];
    return value === undefined ? [] : [`${name}=${value}`];
  });
  const ca = caFile === '' || caFile === 'null' || caFile === 'undefined' ? undefined : caFile;
  const caEnv = ca === undefined ? [] : [`NPM_CONFIG_CAFILE=${containerCaFile}`, `NODE_EXTRA_CA_CERTS=${containerCaFile}`];
  return { env: [`NPM_CONFIG_REGISTRY=${registry}`, ...caEnv, ...proxies], caFile: ca };
}
const containerCaFile = '/etc/ssl/certs/machine-npm-ca.crt';

/** Everything written to `stream` until it ends, as UTF-8 text. */
async function text(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8');
}

describe('the README\'s first command on a fresh Debian machine', { skip: cannotMake, timeout: 20 * 60_000 }, () => {
  const containers: Docker.Container[] = [];
  after(async () => {
    for (const container of containers) await container.remove({ force: true }).catch(() => {});
    for (const dir of scratch) await rm(dir, { recursive: true, force: true });
  });

  /** Runs `script` with sh in a new container of `image`, the checkout at /work; resolves with its exit and output. */
  async function inFreshMachine(image: string, script: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const settings = await registrySettings();
    const container = await docker.createContainer({
      name: `hermetic-test-fresh-${randomBytes(4).toString('hex')}`,
      Image: image,
      Cmd: ['sh', '-c', script],
      WorkingDir: '/work',
      Env: settings.env,
      Labels: { 'hermetic-test': 'fresh-machine' },
    });
    containers.push(container);
    const files = (await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: projectDir, maxBuffer: 64 << 20 })).stdout
      .split('\0')
      .filter((name) => name !== '');
    await container.putArchive(Readable.from(createTar({ cwd: projectDir, portable: true, prefix: 'work' }, files)), { path: '/' });
    if (settings.caFile !== undefined) {
      await container.putArchive(await tarOf({ [containerCaFile.slice(1)]: await readFile(settings.caFile, 'utf8') }), { path: '/' });
    }
    // Without a TTY the engine frames stdout and stderr in one stream; dockerode's modem takes them apart.
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const [out, err] = [text(stdout), text(stderr)];
    const stream = await container.attach({ stream: true, stdout: true, stderr: true });
    docker.modem.demuxStream(stream, stdout, stderr);
    stream.once('end', () => {
      stdout.end();
      stderr.end();
    });
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    return { code: StatusCode, stdout: await out, stderr: await err };
  }

  it('installs what the machine lacks and gives the example\'s three commits their verdicts', async (t) => {
    const command = await readmeFirstCommand();
    assert.match(command, /npm start -- --once/);
    const image = await freshMachineImage();
    const reach = await inFreshMachine(image, 'command -v git go; node -e "fetch(process.env.NPM_CONFIG_REGISTRY).then((r) => process.exit(r.ok ? 0 : 3), (e) => { console.error(e.cause?.code ?? e.message); process.exit(4); })"');
    assert.equal(reach.stdout, '', 'the fresh machine has no git and no go');
    if (reach.code !== 0) return t.skip(`containers here cannot reach the npm registry (${reach.stderr.trim() || `exit ${reach.code}`})`);

    const result = await inFreshMachine(image, `${command} && git -C .hermetic/example log --reverse --format='commit %H %s'`);
    const context = `exit ${result.code}\nstdout:\n${result.stdout}\nstderr (last lines):\n${result.stderr.split('\n').slice(-40).join('\n')}`;
    assert.equal(result.code, 0, context);
    assert.match(result.stderr, /this machine lacks git, go; installing git golang-go from Debian/, context);
    const commits = [...result.stdout.matchAll(/^commit ([0-9a-f]{40}) (.*)$/gm)].map((match) => ({ hash: match[1] ?? '', subject: match[2] ?? '' }));
    assert.equal(commits.length, 3, context);
    const verdicts = new Map([...result.stdout.matchAll(/^(passed|failed|flaky|infra-failure)\s+example ([0-9a-f]{12}) local\b/gm)].map((match) => [match[2], match[1]]));
    assert.deepEqual(
      commits.map((commit) => verdicts.get(commit.hash.slice(0, 12))),
      ['passed', 'failed', 'passed'],
      `the second commit's test fails; the others pass\n${context}`,
    );
    assert.match(result.stdout, /^3 build\(s\): 2 passed, 1 failed$/m, context);
  });
});
