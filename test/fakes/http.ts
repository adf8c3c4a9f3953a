import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The whole of a request's body, as UTF-8 text. */
export async function readBody(request: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of request) parts.push(part as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

/** Answers with `body` as JSON, as Google's APIs do. */
export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(text), ...headers });
  response.end(text);
}

/**
 * Listens on a free port of `host` and resolves with it, keeping idle connections open until the client closes them.
 * Node's default is to close one idle for 5 s, and to say so in a Keep-Alive hint; fetch then counts it open for 4 s
 * by a timer that fires late on a busy machine, sends the next request on the socket the server just closed, and
 * fails with ECONNRESET. A test's verdict must not depend on how busy the machine is.
 */
export async function listenForTests(server: Server, host = '127.0.0.1'): Promise<number> {
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}
