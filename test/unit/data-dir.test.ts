import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { deploymentIdPattern } from '../../shared/core/model/ids.ts';
import { lockDataDir } from '../../shared/runtimes/local/data-dir-lock.ts';
import { localDeploymentId } from '../../shared/runtimes/local/deployment-id.ts';

const lockModule = new URL('../../shared/runtimes/local/data-dir-lock.ts', import.meta.url).href;

describe('the data directory lock', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  async function dataDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-lock-'));
    dirs.push(dir);
    return dir;
  }

  it('is taken over when the file left behind names a live process that does not hold it (a reused PID, a reboot)', async () => {
    const dir = await dataDir();
    // PID 1 always lives; an earlier runtime that died left its number here, and the kernel gave it to another.
    await writeFile(join(dir, 'lock'), '1\n');
    const lock = await lockDataDir(dir);
    await lock.release();
  });

  it('refuses a second holder, naming the first, and is free again once released', async () => {
    const dir = await dataDir();
    const first = await lockDataDir(dir);
    await assert.rejects(lockDataDir(dir), new RegExp(`another hermetic \\(pid ${process.pid}\\) is using the data directory`));
    await first.release();
    const second = await lockDataDir(dir);
    await second.release();
  });

  it('is free the moment its holder is killed with SIGKILL', async () => {
    const dir = await dataDir();
    const holder = spawn(
      process.execPath,
      ['--input-type=module', '-e', `const { lockDataDir } = await import(${JSON.stringify(lockModule)}); await lockDataDir(process.argv[1]); console.log('locked'); setInterval(() => {}, 60_000);`, dir],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const [line] = (await once(holder.stdout, 'data')) as [Buffer];
      assert.equal(line.toString().trim(), 'locked');
      await assert.rejects(lockDataDir(dir), new RegExp(`\\(pid ${holder.pid}\\)`));
    } finally {
      holder.kill('SIGKILL');
      await once(holder, 'exit');
    }
    const lock = await lockDataDir(dir);
    await lock.release();
  });
});

describe('the local deployment ID', () => {
  it('is made once per data directory, kept, and refused when damaged', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hermetic-deployment-'));
    try {
      const made = await localDeploymentId(dir);
      assert.match(made, deploymentIdPattern);
      assert.equal(await localDeploymentId(dir), made);
      const other = await mkdtemp(join(tmpdir(), 'hermetic-deployment-'));
      const elsewhere = await localDeploymentId(other).finally(() => rm(other, { recursive: true, force: true }));
      assert.notEqual(elsewhere, made);
      await writeFile(join(dir, 'deployment-id'), 'Not/An-ID\n');
      await assert.rejects(localDeploymentId(dir), /deployment-id holds "Not\/An-ID", not a deployment ID/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
