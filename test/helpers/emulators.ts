import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { Firestore } from '@google-cloud/firestore';

/**
 * Google's official emulators, from the gcloud CLI package where the machine carries it. A test file asks for one
 * with `emulatorHost(name)`: it gets the host of the one named by the environment (`FIRESTORE_EMULATOR_HOST`,
 * `PUBSUB_EMULATOR_HOST`, as `.ci/run` sets them), or of one it starts for itself on a free port and stops when the
 * file's test process exits. Where neither is possible, `emulatorMissing(name)` says why, for the test's `skip`.
 */
export type EmulatorName = 'firestore' | 'pubsub';

const envVar: Record<EmulatorName, string> = {
  firestore: 'FIRESTORE_EMULATOR_HOST',
  pubsub: 'PUBSUB_EMULATOR_HOST',
};

/** The emulator's launcher inside a Cloud SDK root. */
const launcher: Record<EmulatorName, string> = {
  firestore: 'platform/cloud-firestore-emulator/cloud_firestore_emulator',
  pubsub: 'platform/pubsub-emulator/bin/cloud-pubsub-emulator',
};

function sdkRoot(): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    const gcloud = join(dir, 'gcloud');
    if (existsSync(gcloud)) return dirname(dirname(realpathSync(gcloud)));
  }
  return undefined;
}

function launcherPath(name: EmulatorName): string | undefined {
  const root = sdkRoot();
  const path = root === undefined ? undefined : join(root, launcher[name]);
  return path !== undefined && existsSync(path) ? path : undefined;
}

function hasJava(): boolean {
  return (process.env['PATH'] ?? '').split(delimiter).some((dir) => existsSync(join(dir, 'java')));
}

/** Why the emulator cannot be had here, or false when it can. */
export function emulatorMissing(name: EmulatorName): string | false {
  if (process.env[envVar[name]]) return false;
  if (launcherPath(name) === undefined) {
    return `needs Google's ${name} emulator: no ${envVar[name]} set and no gcloud CLI with it on this machine (.ci/run starts it where gcloud is installed)`;
  }
  if (!hasJava()) return `needs Java for Google's ${name} emulator, and none is on PATH`;
  return false;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function answers(host: string): Promise<boolean> {
  try {
    return (await fetch(`http://${host}/`)).ok;
  } catch {
    return false;
  }
}

const started = new Map<EmulatorName, Promise<string>>();
const children: ChildProcess[] = [];

function stopChildren(): void {
  for (const child of children.splice(0)) {
    // The launcher is a shell script that starts Java: end the whole process group it leads.
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }
}
process.once('exit', stopChildren);

async function start(name: EmulatorName): Promise<string> {
  const path = launcherPath(name);
  if (path === undefined) throw new Error(emulatorMissing(name) || `no ${name} emulator`);
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const args = name === 'firestore' ? ['start', '--host=127.0.0.1', `--port=${port}`] : ['--host=127.0.0.1', `--port=${port}`];
  const child = spawn(path, args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  // Neither the emulator nor its stderr pipe may keep the test process alive: its 'exit' is what stops them.
  child.unref();
  (child.stderr as { unref?: () => void } | null)?.unref?.();
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the ${name} emulator exited with ${child.exitCode}: ${stderr}`);
    if (await answers(host)) return host;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  stopChildren();
  throw new Error(`the ${name} emulator did not answer on ${host} within 60 s: ${stderr}`);
}

/** The emulator's host:port, starting one for this test file if the environment names none. */
export function emulatorHost(name: EmulatorName): Promise<string> {
  const fromEnv = process.env[envVar[name]];
  if (fromEnv) return Promise.resolve(fromEnv);
  let host = started.get(name);
  if (host === undefined) {
    host = start(name);
    started.set(name, host);
  }
  return host;
}

/**
 * A Firestore client of the emulator on a project of its own, so every store starts empty. `drop()` ends the client
 * (again, harmlessly, if a store closed it already) and drops the project's documents, which the emulator keeps in
 * memory otherwise.
 */
export async function firestoreEmulatorProject(): Promise<{ firestore: Firestore; drop(): Promise<void> }> {
  const host = await emulatorHost('firestore');
  const projectId = `hermetic-${randomUUID().slice(0, 8)}`;
  const firestore = new Firestore({ projectId, host, ssl: false });
  return {
    firestore,
    async drop() {
      await firestore.terminate();
      const response = await fetch(`http://${host}/emulator/v1/projects/${projectId}/databases/(default)/documents`, {
        method: 'DELETE',
      });
      assert.ok(response.ok, `emulator DELETE: ${response.status}`);
    },
  };
}
