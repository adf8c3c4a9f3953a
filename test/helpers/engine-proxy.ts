import { rm } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** A Docker engine socket in front of this machine's, whose "engine" can be restarted without touching the real one. */
export interface EngineProxy {
  /** `DOCKER_HOST` for a client that should see this engine. */
  dockerHost: string;
  /**
   * What a client sees while dockerd restarts: every connection dropped, the socket gone for `downMs`, then answering
   * again. `whileDown` runs meanwhile, for what the restart does to containers.
   */
  restart(downMs: number, whileDown?: () => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

/** The engine's Unix socket, from DOCKER_HOST or the default; undefined when the engine is reached over TCP. */
export function engineSocket(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const host = env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  return host.startsWith('unix://') ? host.slice('unix://'.length) : undefined;
}

/** Serves `socketPath`, passing every connection through to the engine at `target`. */
export async function startEngineProxy(socketPath: string, target: string): Promise<EngineProxy> {
  const open = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection(target);
    for (const socket of [client, upstream]) {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  const listen = () => new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, () => resolve()));
  const stop = async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of open) socket.destroy();
    });
    await rm(socketPath, { force: true });
  };
  await listen();
  return {
    dockerHost: `unix://${socketPath}`,
    async restart(downMs, whileDown) {
      await stop();
      await whileDown?.();
      await sleep(downMs);
      await listen();
    },
    close: stop,
  };
}
