import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { images } from '../../shared/cli/images.ts';
import { UsageError, type Io } from '../../shared/cli/io.ts';
import { ConfigError } from '../../shared/core/errors.ts';
import { bundleAgent } from '../../shared/images/agent-payload.ts';
import { imageTagFor } from '../../shared/images/build-images.ts';
import { withBuildLock } from '../../shared/images/build-lock.ts';
import { checkHostType } from '../../shared/images/check-host-type.ts';
import { debianSuite } from '../../shared/images/debian-suite.ts';
import { followDockerStream } from '../../shared/images/docker-stream.ts';
import { createHostProbe, exitCodeOf, explain32BitFailure, parseBinfmtDefinition, type EmulationState, type HostProbe } from '../../shared/images/host-probe.ts';
import { findHostType, listHostTypes, UnknownHostTypeError } from '../../shared/images/host-types.ts';
import { baseRecipeFor, baseTag, imageTag, type ImageRecipe } from '../../shared/images/recipe.ts';

const projectDir = fileURLToPath(new URL('../../', import.meta.url));
const envDir = join(projectDir, 'infra', 'env');
const debianAarch64 =
  ':qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:' +
  '\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OP';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'hermetic-images-test-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** A probe that answers as told, for machines this test does not run on. */
function fakeProbe(answers: { arch?: string; run32Bit?: string; emulation?: EmulationState }): HostProbe & { asked: string[] } {
  const asked: string[] = [];
  return {
    arch: answers.arch ?? 'amd64',
    asked,
    run32Bit: async () => {
      asked.push('run32Bit');
      return answers.run32Bit;
    },
    emulation: async (arch) => {
      asked.push(`emulation ${arch}`);
      return answers.emulation ?? { state: 'unavailable', reason: 'no qemu in this fake' };
    },
    enableEmulation: async () => {
      throw new Error('checkHostType must never register anything');
    },
  };
}

function imageRecipe(overrides: Partial<ImageRecipe> = {}): ImageRecipe {
  return {
    hostType: 'linux-amd64',
    files: [
      { path: 'Dockerfile', sha256: 'a'.repeat(64) },
      { path: 'host-type.json', sha256: 'b'.repeat(64) },
    ],
    baseTag: 'hermetic/base-bookworm-amd64:0123456789ab',
    agentSha256: 'c'.repeat(64),
    nodeSha256: 'd'.repeat(64),
    salt: '',
    ...overrides,
  };
}

describe('recipe hashing', () => {
  it('gives a base the same tag for the same recipe, and a new one for any change', () => {
    const recipe = baseRecipeFor('bookworm', 'amd64');
    assert.match(baseTag(recipe), /^hermetic\/base-bookworm-amd64:[0-9a-f]{12}$/);
    assert.equal(baseTag(baseRecipeFor('bookworm', 'amd64')), baseTag(recipe));
    const changed = [
      baseRecipeFor('trixie', 'amd64'),
      baseRecipeFor('bookworm', 'arm64'),
      { ...recipe, include: ['ca-certificates', 'curl'] },
      { ...recipe, makerVersion: recipe.makerVersion + 1 },
      baseRecipeFor('bookworm', 'amd64', 'bench-1'),
    ];
    const tags = new Set([baseTag(recipe), ...changed.map(baseTag)]);
    assert.equal(tags.size, changed.length + 1);
    assert.equal(baseTag({ ...recipe, include: ['b', 'a'] }), baseTag({ ...recipe, include: ['a', 'b'] }), 'the package list is a set');
  });

  it('gives an image the same tag for the same recipe, and a new one when any input changes', () => {
    const tag = imageTag(imageRecipe());
    assert.match(tag, /^hermetic\/linux-amd64:[0-9a-f]{12}$/);
    assert.equal(imageTag(imageRecipe()), tag);
    assert.equal(imageTag(imageRecipe({ files: [...imageRecipe().files].reverse() })), tag, 'file order does not matter');
    const changed = [
      imageRecipe({ files: [{ path: 'Dockerfile', sha256: 'e'.repeat(64) }, { path: 'host-type.json', sha256: 'b'.repeat(64) }] }),
      imageRecipe({ files: [...imageRecipe().files, { path: 'extra.sh', sha256: 'f'.repeat(64) }] }),
      imageRecipe({ baseTag: 'hermetic/base-bookworm-amd64:ba5eba5eba5e' }),
      imageRecipe({ agentSha256: 'e'.repeat(64) }),
      imageRecipe({ nodeSha256: 'e'.repeat(64) }),
      imageRecipe({ salt: 'bench-1' }),
    ];
    const tags = changed.map(imageTag);
    assert.equal(new Set([tag, ...tags]).size, changed.length + 1);
    assert.match(imageTag(imageRecipe({ hostType: 'linux-386' })), /^hermetic\/linux-386:/);
  });

  it('tags a recipe folder by its content: a copy has the same tag, a changed Dockerfile or metadata a new one', async () => {
    const copy = join(scratch, 'env-copy');
    await cp(envDir, copy, { recursive: true });
    const options = { suite: 'bookworm', cacheDir: join(scratch, 'cache') };
    const original = await imageTagFor('linux-amd64', { ...options, envDir });
    assert.equal(await imageTagFor('linux-amd64', { ...options, envDir: copy }), original);
    assert.equal(await imageTagFor('linux-amd64', { ...options, envDir: copy }), original, 'stable across calls');

    const dockerfile = join(copy, 'linux-amd64', 'Dockerfile');
    const text = await readFile(dockerfile, 'utf8');
    await writeFile(dockerfile, text.replace('golang-go gcc', 'golang-go gcc make'));
    const withMake = await imageTagFor('linux-amd64', { ...options, envDir: copy });
    assert.notEqual(withMake, original, 'a changed package list gives a new tag');

    const metadata = join(copy, 'linux-amd64', 'host-type.json');
    const json = JSON.parse(await readFile(metadata, 'utf8')) as { description: string };
    await writeFile(metadata, JSON.stringify({ ...json, description: `${json.description}, changed` }));
    const withMetadata = await imageTagFor('linux-amd64', { ...options, envDir: copy });
    assert.notEqual(withMetadata, withMake);

    await writeFile(join(copy, 'linux-amd64', 'setup.sh'), 'echo hi\n');
    assert.notEqual(await imageTagFor('linux-amd64', { ...options, envDir: copy }), withMetadata, 'every file of the folder counts');

    assert.notEqual(await imageTagFor('linux-amd64', { ...options, envDir, suite: 'trixie' }), original, 'another suite, another base');
    assert.notEqual(await imageTagFor('linux-amd64', { ...options, envDir, salt: 'x' }), original);
  });

  it('folds a parent\'s tag into its children\'s, and a borrowed Dockerfile into the borrower\'s', async () => {
    const copy = join(scratch, 'env-family');
    await cp(envDir, copy, { recursive: true });
    const options = { suite: 'bookworm', cacheDir: join(scratch, 'cache'), envDir: copy };
    const tagsOf = async (extra: { suite?: string } = {}) =>
      Object.fromEntries(
        await Promise.all(['linux-amd64', 'linux-386', 'linux-amd64-race', 'linux-arm64'].map(async (name) => [name, await imageTagFor(name, { ...options, ...extra })])),
      ) as Record<string, string>;
    const before = await tagsOf();

    // The parent's Dockerfile: every child's tag and the borrower's change with the parent's.
    const parentDockerfile = join(copy, 'linux-amd64', 'Dockerfile');
    await writeFile(parentDockerfile, (await readFile(parentDockerfile, 'utf8')).replace('golang-go gcc', 'golang-go gcc make'));
    const afterParent = await tagsOf();
    for (const name of Object.keys(before)) assert.notEqual(afterParent[name], before[name], `${name} changes with linux-amd64's Dockerfile`);

    // A child's own folder: only that child's tag changes.
    await writeFile(join(copy, 'linux-386', 'Dockerfile'), `${await readFile(join(copy, 'linux-386', 'Dockerfile'), 'utf8')}ENV GO386=softfloat\n`);
    const afterChild = await tagsOf();
    assert.notEqual(afterChild['linux-386'], afterParent['linux-386']);
    for (const name of ['linux-amd64', 'linux-amd64-race', 'linux-arm64']) assert.equal(afterChild[name], afterParent[name], `${name} does not depend on linux-386`);

    // The parent's base reaches the children through the parent's tag.
    const trixie = await tagsOf({ suite: 'trixie' });
    for (const name of Object.keys(before)) assert.notEqual(trixie[name], afterChild[name], `${name} changes with the suite`);

    // The parent's tag is what a child's recipe hashes as its base.
    const parentTag = imageTag(imageRecipe());
    const child = imageRecipe({ hostType: 'linux-386', baseTag: parentTag });
    assert.notEqual(imageTag(child), imageTag({ ...child, baseTag: imageTag(imageRecipe({ agentSha256: 'e'.repeat(64) })) }));
  });

  it('gives a new tag when the agent bundle changes', async () => {
    // Two checkouts that differ only in the agent's source; node_modules is the real one.
    const tags: string[] = [];
    for (const [index, body] of ['console.log("one");', 'console.log("two");'].entries()) {
      const checkout = join(scratch, `checkout-${index}`);
      await mkdir(join(checkout, 'shared', 'agent'), { recursive: true });
      await writeFile(join(checkout, 'shared', 'agent', 'main.ts'), body);
      await symlink(join(projectDir, 'node_modules'), join(checkout, 'node_modules'));
      tags.push(await imageTagFor('linux-amd64', { projectDir: checkout, envDir, suite: 'bookworm', cacheDir: join(scratch, 'cache') }));
    }
    assert.notEqual(tags[0], tags[1]);
  });

  it('bundles the agent into one ES module that runs without the project', async () => {
    const bundle = await bundleAgent(projectDir);
    assert.doesNotMatch(bundle, /from ["']\.\.?\//, 'no relative imports left');
    assert.doesNotMatch(bundle, /from ["'](zod|tar)["']/, 'dependencies are inlined');
    const file = join(scratch, 'agent.mjs');
    await writeFile(file, bundle);
    const { spawnSync } = await import('node:child_process');
    const run = spawnSync(process.execPath, [file, '--help'], { cwd: scratch, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /--workdir/);
  });
});

describe('host types', () => {
  it('lists the recipes under infra/env', async () => {
    const types = await listHostTypes();
    assert.deepEqual(
      types.map((type) => type.name),
      ['linux-386', 'linux-amd64', 'linux-amd64-race', 'linux-arm64'],
    );
    const byName = new Map(types.map((type) => [type.name, type]));
    assert.equal(byName.get('linux-arm64')?.platform, 'linux/arm64');
    assert.equal(byName.get('linux-arm64')?.arch, 'arm64');
    assert.equal(byName.get('linux-386')?.platform, 'linux/amd64');
    assert.equal(byName.get('linux-386')?.runs32BitPrograms, true);
    assert.equal(byName.get('linux-amd64')?.runs32BitPrograms, false);
    assert.equal(byName.get('linux-386')?.parent?.name, 'linux-amd64');
    assert.equal(byName.get('linux-amd64-race')?.parent?.name, 'linux-amd64');
    assert.equal(byName.get('linux-amd64')?.parent, undefined);
    assert.equal(byName.get('linux-arm64')?.parent, undefined);
    assert.equal(byName.get('linux-arm64')?.contextDir, byName.get('linux-amd64')?.dir, 'linux-arm64 builds linux-amd64\'s Dockerfile');
    for (const type of types) {
      const dockerfile = await readFile(join(type.contextDir, 'Dockerfile'), 'utf8');
      assert.match(dockerfile, /^ARG BASE\nFROM \$\{BASE\}$/m, type.name);
      if (type.parent !== undefined) {
        // A child holds only what differs from its parent; everything else comes with the parent's image.
        assert.doesNotMatch(dockerfile, /apt-get|^COPY|^ENTRYPOINT|useradd/m, type.name);
        assert.match(dockerfile, /^ENV /m, type.name);
        continue;
      }
      assert.match(dockerfile, /--no-install-recommends/, type.name);
      assert.match(dockerfile, /rm -rf \/var\/lib\/apt\/lists/, type.name);
      assert.match(dockerfile, /^COPY agent\/ \/opt\/hermetic\/$/m, type.name);
      assert.match(dockerfile, /--uid 1000 --gid 1000/, type.name);
      assert.match(dockerfile, /^ENTRYPOINT \["\/opt\/hermetic\/node", "\/opt\/hermetic\/agent.mjs", "--workdir", "\/work", "--spec", "\/etc\/hermetic\/task.json", "--isolate-steps"\]$/m, type.name);
    }
  });

  it('names the known host types when asked for an unknown one', async () => {
    await assert.rejects(findHostType('linux-sparc'), (error: unknown) => {
      assert.ok(error instanceof UnknownHostTypeError);
      assert.match(error.message, /"linux-sparc".*linux-386, linux-amd64, linux-amd64-race, linux-arm64/);
      return true;
    });
  });

  it('refuses a malformed recipe, naming the file and the field', async () => {
    const dir = join(scratch, 'bad-env');
    await mkdir(join(dir, 'linux-bad'), { recursive: true });
    await writeFile(join(dir, 'linux-bad', 'Dockerfile'), 'FROM scratch\n');
    await writeFile(join(dir, 'linux-bad', 'host-type.json'), JSON.stringify({ description: 'x', platform: 'linux/sparc' }));
    await assert.rejects(listHostTypes(dir), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /host-type\.json: platform/);
      return true;
    });
    await writeFile(join(dir, 'linux-bad', 'host-type.json'), JSON.stringify({ description: 'x', platform: 'linux/amd64' }));
    await rm(join(dir, 'linux-bad', 'Dockerfile'));
    await assert.rejects(listHostTypes(dir), /no Dockerfile/);
  });

  /** A folder of recipes: each name maps to its host-type.json fields, and gets a Dockerfile unless it borrows one. */
  async function family(name: string, recipes: Record<string, Record<string, unknown>>): Promise<string> {
    const dir = join(scratch, name);
    for (const [type, metadata] of Object.entries(recipes)) {
      await mkdir(join(dir, type), { recursive: true });
      await writeFile(join(dir, type, 'host-type.json'), JSON.stringify({ description: type, platform: 'linux/amd64', ...metadata }));
      if (metadata['dockerfile'] === undefined) await writeFile(join(dir, type, 'Dockerfile'), 'ARG BASE\nFROM ${BASE}\n');
    }
    return dir;
  }
  const configError = (pattern: RegExp) => (error: unknown) => {
    assert.ok(error instanceof ConfigError, String(error));
    assert.match(error.message, pattern);
    return true;
  };

  it('links a host type to its parent, which passes on its need for 32-bit programs', async () => {
    const dir = await family('env-linked', { root: { runs32BitPrograms: true }, middle: { from: 'root' }, leaf: { from: 'middle' } });
    const leaf = await findHostType('leaf', dir);
    assert.equal(leaf.parent?.name, 'middle');
    assert.equal(leaf.parent?.parent?.name, 'root');
    assert.equal(leaf.runs32BitPrograms, true, 'a child image holds what its parent holds');
    assert.equal((await checkHostType(leaf, { probe: fakeProbe({ run32Bit: 'no 32-bit here' }) })).available, false);
  });

  it('refuses a parent that does not exist, naming the file and the field', async () => {
    const dir = await family('env-orphan', { 'linux-a': {}, 'linux-b': { from: 'linux-nope' } });
    await assert.rejects(listHostTypes(dir), configError(/linux-b\/host-type\.json: from: no host type "linux-nope"; expected one of: linux-a, linux-b$/));
    await assert.rejects(findHostType('linux-a', dir), ConfigError, 'one bad recipe fails the listing, as a malformed one does');
  });

  it('refuses a cycle of parents', async () => {
    const cycle = await family('env-cycle', { 'linux-a': { from: 'linux-c' }, 'linux-b': { from: 'linux-a' }, 'linux-c': { from: 'linux-b' }, 'linux-d': {} });
    await assert.rejects(listHostTypes(cycle), configError(/host-type\.json: from: the host types linux-a → linux-c → linux-b → linux-a each build on the next, a cycle/));
    const itself = await family('env-itself', { 'linux-a': { from: 'linux-a' } });
    await assert.rejects(listHostTypes(itself), configError(/linux-a\/host-type\.json: from: names linux-a itself/));
  });

  it('refuses a child whose platform is not its parent\'s, naming both', async () => {
    const dir = await family('env-platform', { 'linux-amd': {}, 'linux-arm': { platform: 'linux/arm64', from: 'linux-amd' } });
    await assert.rejects(
      listHostTypes(dir),
      configError(/linux-arm\/host-type\.json: platform: linux\/arm64, but its parent linux-amd \("from"\) is linux\/amd64/),
    );
  });

  it('builds another host type\'s Dockerfile when told to, and refuses a name it cannot use', async () => {
    const dir = await family('env-borrow', { 'linux-amd': {}, 'linux-arm': { platform: 'linux/arm64', dockerfile: 'linux-amd' } });
    const arm = await findHostType('linux-arm', dir);
    assert.equal(arm.contextDir, join(dir, 'linux-amd'));
    assert.equal(arm.dir, join(dir, 'linux-arm'));
    assert.equal(arm.arch, 'arm64');

    await writeFile(join(dir, 'linux-arm', 'Dockerfile'), 'ARG BASE\nFROM ${BASE}\n');
    await assert.rejects(listHostTypes(dir), configError(/linux-arm\/host-type\.json: dockerfile: names linux-amd's Dockerfile, but .* has its own/));
    const unknown = await family('env-borrow-unknown', { 'linux-arm': { dockerfile: 'linux-nope' } });
    await assert.rejects(listHostTypes(unknown), configError(/linux-arm\/host-type\.json: dockerfile: no host type "linux-nope"/));
    const chain = await family('env-borrow-chain', { 'linux-a': {}, 'linux-b': { dockerfile: 'linux-a' }, 'linux-c': { dockerfile: 'linux-b' } });
    await assert.rejects(listHostTypes(chain), configError(/linux-c\/host-type\.json: dockerfile: linux-b has no Dockerfile of its own \(it builds linux-a's\)/));
  });
});

describe('availability', () => {
  it('needs nothing special for the native architecture', async () => {
    const probe = fakeProbe({ arch: 'amd64' });
    assert.deepEqual(await checkHostType('linux-amd64', { probe }), { available: true });
    assert.deepEqual(await checkHostType('linux-amd64-race', { probe }), { available: true });
    assert.deepEqual(probe.asked, []);
  });

  it('runs 32-bit host types only where the kernel runs a 32-bit program', async () => {
    assert.deepEqual(await checkHostType('linux-386', { probe: fakeProbe({}) }), { available: true });
    const verdict = await checkHostType('linux-386', { probe: fakeProbe({ run32Bit: 'this kernel cannot run 32-bit x86 programs' }) });
    assert.deepEqual(verdict, { available: false, reason: 'not available on this host: this kernel cannot run 32-bit x86 programs' });
  });

  it('runs a foreign architecture only through a qemu handler that is, or can be, registered', async () => {
    const unavailable = await checkHostType('linux-arm64', { probe: fakeProbe({ emulation: { state: 'unavailable', reason: 'no binfmt_misc' } }) });
    assert.deepEqual(unavailable, { available: false, reason: 'not available on this host: no binfmt_misc' });
    assert.deepEqual(await checkHostType('linux-arm64', { probe: fakeProbe({ emulation: { state: 'can-enable' } }) }), { available: true });
    assert.deepEqual(await checkHostType('linux-arm64', { probe: fakeProbe({ emulation: { state: 'ready', handler: 'qemu-aarch64' } }) }), { available: true });
    const arm64Host = fakeProbe({ arch: 'arm64' });
    assert.deepEqual(await checkHostType('linux-arm64', { probe: arm64Host }), { available: true });
    assert.equal((await checkHostType('linux-amd64', { probe: arm64Host })).available, false, 'amd64 is foreign on an arm64 host');
    assert.deepEqual(arm64Host.asked, ['emulation amd64']);
  });

  it('says the kernel refused the exec, and how to turn 32-bit emulation on, however the refusal shows', async () => {
    // An ELF for a machine no kernel or binfmt_misc handler knows is refused with ENOEXEC, as a 32-bit program is by a
    // kernel without IA32 emulation; Node's spawn goes through execvp, which hands such a file to /bin/sh.
    const program = join(scratch, 'unknown-machine');
    const elf = Buffer.alloc(96);
    elf.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1], 0);
    elf.writeUInt16LE(2, 16);
    elf.writeUInt16LE(0x9999, 18);
    await writeFile(program, elf, { mode: 0o755 });
    const seen = await exitCodeOf(program);
    assert.match(explain32BitFailure(seen, ''), /cannot run 32-bit x86 programs \(exec failed with ENOEXEC.*\): .*ia32_emulation=on/, `seen: ${seen}`);

    for (const code of ['ENOEXEC', 126, 127]) {
      assert.match(explain32BitFailure(code, ''), /exec failed with ENOEXEC.*boot with ia32_emulation=on\) or was not built in \(CONFIG_IA32_EMULATION\)/);
    }
    assert.match(
      explain32BitFailure(127, 'BOOT_IMAGE=/vmlinuz root=/dev/vda1 ia32_emulation=off quiet'),
      /^this kernel cannot run 32-bit x86 programs \(exec failed with ENOEXEC, seen as exit 127 .*\): ia32_emulation=off is on its command line; boot with ia32_emulation=on$/,
    );
    assert.equal(explain32BitFailure('signal SIGSEGV', ''), 'a 32-bit x86 test program did not run as expected (signal SIGSEGV)');
  });

  it('tells whether this kernel runs 32-bit x86 programs by running one', async () => {
    const verdict = await createHostProbe({ scratchDir: scratch }).run32Bit();
    if (process.arch !== 'x64') assert.match(verdict ?? '', /x86-64 host/);
    else assert.ok(verdict === undefined || /32-bit/.test(verdict), String(verdict));
  });
});

describe('qemu registration', () => {
  async function fakeMachine(name: string, entries: Record<string, string>, withDefinition = true) {
    const binfmtDir = join(scratch, name, 'binfmt_misc');
    const binfmtConfDir = join(scratch, name, 'binfmt.d');
    await mkdir(binfmtDir, { recursive: true });
    await mkdir(binfmtConfDir, { recursive: true });
    const interpreter = join(scratch, name, 'qemu-aarch64-static');
    await writeFile(interpreter, '');
    if (withDefinition) await writeFile(join(binfmtConfDir, 'qemu-aarch64.conf'), debianAarch64.replace('/usr/libexec/qemu-binfmt/aarch64-binfmt-P', interpreter));
    await writeFile(join(binfmtDir, 'register'), '');
    await writeFile(join(binfmtDir, 'status'), 'enabled\n');
    for (const [entry, text] of Object.entries(entries)) await writeFile(join(binfmtDir, entry), text);
    return { probe: createHostProbe({ binfmtDir, binfmtConfDir }), binfmtDir };
  }
  const entry = (flags: string, enabled = 'enabled') =>
    `${enabled}\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: ${flags}\noffset 0\n` +
    'magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n';

  it('reads Debian\'s binfmt.d definition and adds the F flag', () => {
    const parsed = parseBinfmtDefinition(`# comment\n${debianAarch64}\n`);
    assert.equal(parsed?.magicHex, '7f454c460201010000000000000000000200b700');
    assert.equal(parsed?.interpreter, '/usr/libexec/qemu-binfmt/aarch64-binfmt-P');
    assert.ok(parsed?.registerLine.endsWith(':/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF'));
    assert.ok(parseBinfmtDefinition(`${debianAarch64}F`)?.registerLine.endsWith(':OPF'), 'F is not added twice');
    assert.equal(parseBinfmtDefinition('not a definition'), undefined);
  });

  it('is ready when a handler with the F flag is registered, under any name', async () => {
    const { probe } = await fakeMachine('ready', { 'qemu-arm64-other': entry('POCF') });
    assert.deepEqual(await probe.emulation('arm64'), { state: 'ready', handler: 'qemu-arm64-other' });
  });

  it('says why a handler without F, or a disabled one, does not do', async () => {
    const withoutF = await fakeMachine('no-f', { 'qemu-aarch64': entry('OC') });
    const state = await withoutF.probe.emulation('arm64');
    assert.equal(state.state, 'unavailable');
    assert.match(state.state === 'unavailable' ? state.reason : '', /without the F flag/);
    const disabled = await fakeMachine('disabled', { 'qemu-aarch64': entry('OCF', 'disabled') });
    const disabledState = await disabled.probe.emulation('arm64');
    assert.match(disabledState.state === 'unavailable' ? disabledState.reason : '', /disabled/);
  });

  it('asks for qemu-user-static when its definition is missing', async () => {
    const { probe } = await fakeMachine('no-qemu', {}, false);
    const state = await probe.emulation('arm64');
    assert.match(state.state === 'unavailable' ? state.reason : '', /apt-get install qemu-user-static/);
  });

  it('registers the definition with the F flag when none is registered', async () => {
    const { probe, binfmtDir } = await fakeMachine('register', {});
    assert.deepEqual(await probe.emulation('arm64'), { state: 'can-enable' });
    // A folder is not a kernel: the line is written, but no handler appears, and that is reported.
    await assert.rejects(probe.enableEmulation('arm64'), /not usable/);
    assert.match(await readFile(join(binfmtDir, 'register'), 'utf8'), /^:qemu-aarch64:M::.*:OPF$/);
  });
});

describe('small parts', () => {
  it('reads the Debian suite from os-release', async () => {
    const file = join(scratch, 'os-release');
    await writeFile(file, 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\nID=debian\n');
    assert.equal(await debianSuite(file), 'trixie');
    await writeFile(file, 'ID=debian\n');
    await assert.rejects(debianSuite(file), /VERSION_CODENAME/);
  });

  it('reports the failing step of a docker build with its last lines', async () => {
    const events = [
      { stream: 'Step 1/3 : FROM base\n' },
      { stream: ' ---> 0123\n' },
      { stream: 'Step 2/3 : RUN make\n' },
      { stream: 'make: *** no rule\n' },
      { error: 'The command returned a non-zero code: 2', errorDetail: { code: 2, message: 'The command returned a non-zero code: 2' } },
    ];
    const lines: string[] = [];
    const outcome = await followDockerStream(Readable.from(events.map((event) => `${JSON.stringify(event)}\r\n`)), (line) => lines.push(line));
    assert.equal(outcome.step, 'Step 2/3 : RUN make');
    assert.deepEqual(outcome.tail, ['make: *** no rule']);
    assert.equal(outcome.error, 'The command returned a non-zero code: 2');
    assert.ok(lines.includes('make: *** no rule'));
  });

  it('lets one holder of a build lock work at a time, and takes over a lock whose file names a process that does not hold it', async () => {
    const dir = join(scratch, 'locks');
    let inside = 0;
    let most = 0;
    const work = async () => {
      inside++;
      most = Math.max(most, inside);
      await sleep(30);
      inside--;
    };
    await Promise.all([1, 2, 3].map(() => withBuildLock(dir, 'hermetic/x:1', work, { pollMs: 5 })));
    assert.equal(most, 1);
    // PID 1 lives, but holds no lock: what a crashed holder leaves once its number is reused.
    await writeFile(join(dir, 'hermetic_x_1.lock'), '1\n');
    assert.equal(await withBuildLock(dir, 'hermetic/x:1', async () => 'taken over', { pollMs: 5 }), 'taken over');
  });
});

describe('hermetic images (usage)', () => {
  function captureIo(): Io & { out: string[]; err: string[] } {
    const out: string[] = [];
    const err: string[] = [];
    return { cwd: scratch, out, err, stdout: (text) => out.push(text), stderr: (text) => err.push(text), interrupted: new Promise(() => {}) };
  }

  it('prints help for each command', async () => {
    for (const args of [['--help'], ['build', '--help'], ['list', '-h']]) {
      const io = captureIo();
      assert.equal(await images(args, io), 0);
      assert.match(io.out.join('\n'), /^Usage: hermetic images/);
      assert.deepEqual(io.err, []);
    }
    assert.equal(await images([], captureIo()), 2);
  });

  it('refuses an unknown host type before any build, naming the known ones', async () => {
    await assert.rejects(images(['build', 'linux-amd64', 'plan9-386'], captureIo()), (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.match(error.message, /"plan9-386".*linux-386, linux-amd64, linux-amd64-race, linux-arm64/);
      return true;
    });
    await assert.rejects(images(['frobnicate'], captureIo()), UsageError);
    await assert.rejects(images(['build', '--bogus'], captureIo()), /--bogus/);
  });

  it('lists host types as JSON, alone on stdout', async () => {
    const io = captureIo();
    assert.equal(await images(['list', '--json'], io), 0);
    const listed = JSON.parse(io.out.join('\n')) as Array<{ hostType: string; tag: string | null; available: boolean; reason: string | null }>;
    assert.deepEqual(
      listed.map((entry) => entry.hostType),
      ['linux-386', 'linux-amd64', 'linux-amd64-race', 'linux-arm64'],
    );
    const amd64 = listed.find((entry) => entry.hostType === 'linux-amd64');
    assert.match(amd64?.tag ?? '', /^hermetic\/linux-amd64:[0-9a-f]{12}$/);
    for (const entry of listed) if (!entry.available) assert.match(entry.reason ?? '', /not available on this host: /);
  });
});
