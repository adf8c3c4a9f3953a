import type { IncomingMessage, ServerResponse } from 'node:http';
import { handleWebhook, type WebhookDeps } from '../shared/trybots/webhook.ts';

/** GitHub sends at most 25 MB; a comment event is a few kB, so anything near this is not one. */
const maxBodyBytes = 5 * 1024 * 1024;

/**
 * The `webhook` HTTP function over Node's request and response, for functions-framework (which has already read the
 * body into `rawBody`) and for `node:http`: POST only, the body kept as the exact bytes GitHub signed.
 */
export function createWebhook(deps: WebhookDeps) {
  return async function webhook(req: IncomingMessage & { rawBody?: Buffer }, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') return send(res, 405, 'POST a GitHub webhook delivery here');
    const body = req.rawBody ?? (await readBody(req));
    if (body === undefined) return send(res, 413, `body larger than ${maxBodyBytes} bytes`);
    const header = (name: string) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value[0] : value;
    };
    const reply = await handleWebhook(deps, {
      event: header('x-github-event'),
      signature: header('x-hub-signature-256'),
      id: header('x-github-delivery'),
      body,
    });
    send(res, reply.status, reply.message);
  };
}

function send(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ message }));
}

/** The whole body, or undefined once it passes the limit. */
async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBodyBytes) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
