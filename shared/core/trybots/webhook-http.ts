import type { IncomingMessage, ServerResponse } from 'node:http';
import { handleWebhook, type WebhookDeps } from './webhook.ts';

/**
 * The `webhook` HTTP function over Node's request and response, for functions-framework (which has already read the
 * body into `rawBody`) and for `node:http` (where the body streams, and is read only if the headers let it through):
 * POST only, the body kept as the exact bytes GitHub signed.
 */
export function createWebhook(deps: WebhookDeps) {
  return async function webhook(req: IncomingMessage & { rawBody?: Buffer }, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') return send(req, res, 405, 'POST a GitHub webhook delivery here');
    const header = (name: string) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value[0] : value;
    };
    const length = header('content-length');
    const reply = await handleWebhook(deps, {
      event: header('x-github-event'),
      signature: header('x-hub-signature-256'),
      id: header('x-github-delivery'),
      length: length === undefined ? undefined : Number(length),
      body: req.rawBody === undefined ? req : [req.rawBody],
    });
    send(req, res, reply.status, reply.message);
  };
}

/** Replies; a refusal that left part of the body unread closes the connection rather than read the rest. */
function send(req: IncomingMessage, res: ServerResponse, status: number, message: string): void {
  if (!req.complete) res.setHeader('connection', 'close');
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ message }));
}
