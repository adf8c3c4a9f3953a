import { sign } from '@octokit/webhooks-methods';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createWebhook } from '../../shared/core/trybots/webhook-http.ts';
import { parseConfig } from '../../shared/core/config/config.ts';
import { decode, topics, TryRequested } from '../../shared/core/model/messages.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { parseTryComment } from '../../shared/core/trybots/comment.ts';
import { createMemoryGitHub } from '../fakes/memory-github.ts';
import { createMemoryQueue } from '../fakes/memory-queue.ts';
import { listenForTests, readBody } from '../fakes/http.ts';
import { hangGuardMs } from '../helpers/wait.ts';

const secret = 'it is a secret to everybody';
const head = 'b'.repeat(40);
const base = 'a'.repeat(40);

/** An `issue_comment` payload shaped as GitHub sends it (the fields read, and some that are not). */
function commentEvent(body: string, overrides: { login?: string; type?: string; repo?: string; action?: string; pull?: boolean } = {}) {
  return {
    action: overrides.action ?? 'created',
    issue: { number: 12, title: 'net/http: fix it', ...(overrides.pull === false ? {} : { pull_request: { url: 'https://api.github.com/repos/acme/demo/pulls/12' } }) },
    comment: { id: 1, body, user: { login: overrides.login ?? 'rsc', id: 104030, type: overrides.type ?? 'User' }, created_at: '2026-12-01T00:00:00Z' },
    repository: { id: 1, full_name: overrides.repo ?? 'acme/demo', private: false },
    sender: { login: overrides.login ?? 'rsc' },
  };
}

describe('webhook: /try comments', () => {
  const queue = createMemoryQueue({ now: Date.now });
  const github = createMemoryGitHub();
  github.open(12, { sha: head, ref: 'fix; rm -rf /', repo: 'contributor/demo' }, base);
  const catalog = parseConfig(
    { repos: [{ name: 'demo', url: 'https://github.com/acme/demo.git', builders: ['ok'] }], builders: { ok: { type: 'command', command: 'true' } } },
    'test.json',
  );
  let server: Server;
  let url: string;
  before(async () => {
    await queue.subscribe(topics.tryRequested, 'trybot', { ackDeadlineMs: 60_000, maxAttempts: 5, minBackoffMs: 10, maxBackoffMs: 100 });
    const webhook = createWebhook({ secret, catalog, github, publisher: queue, logger: silentLogger });
    server = createServer((req, res) => void webhook(req, res));
    url = `http://127.0.0.1:${await listenForTests(server)}/webhook`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function deliver(payload: unknown, options: { event?: string; signature?: string | null } = {}) {
    const body = JSON.stringify(payload);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-github-event': options.event ?? 'issue_comment', 'x-github-delivery': 'd-1' };
    const signature = options.signature === undefined ? await sign(secret, body) : options.signature;
    if (signature !== null) headers['x-hub-signature-256'] = signature;
    const response = await fetch(url, { method: 'POST', headers, body });
    return { status: response.status, message: ((await response.json()) as { message: string }).message };
  }

  async function published(): Promise<TryRequested[]> {
    const deliveries = await queue.pull('trybot', 100);
    for (const delivery of deliveries) await queue.ack(delivery);
    return deliveries.map((delivery) => decode(TryRequested, delivery.data, 'published request'));
  }

  it("publishes a signed /try as a request for the pull request's head, by the comment's author", async () => {
    const reply = await deliver(commentEvent('LGTM\n/try ok tests=go_test:net/http'));
    assert.equal(reply.status, 202, reply.message);
    assert.deepEqual(await published(), [
      { v: 1, repo: 'demo', commit: head, pullRequest: 12, base, requester: 'rsc', builders: ['ok'], mode: { kind: 'tests', tests: ['go_test:net/http'] }, via: 'comment' },
    ]);
  });

  it('refuses a forged or missing signature, and one made with another secret, before reading the body', async () => {
    const payload = commentEvent('/try');
    for (const signature of [null, 'sha256=' + '0'.repeat(64), await sign('another secret', JSON.stringify(payload)), 'sha1=abc', 'garbage']) {
      const reply = await deliver(payload, { signature });
      assert.equal(reply.status, 401, String(signature));
    }
    assert.deepEqual(await published(), []);
  });

  it('a signature over one body does not cover another', async () => {
    const signature = await sign(secret, JSON.stringify(commentEvent('nice work')));
    const reply = await deliver(commentEvent('/try'), { signature });
    assert.equal(reply.status, 401);
    assert.deepEqual(await published(), []);
  });

  it('ignores other events, edits, issues, bots, unwatched repos and comments without /try', async () => {
    const ignored = [
      [commentEvent('/try'), 'push'],
      [commentEvent('/try', { action: 'edited' }), 'issue_comment'],
      [commentEvent('/try', { pull: false }), 'issue_comment'],
      [commentEvent('/try', { type: 'Bot' }), 'issue_comment'],
      [commentEvent('/try', { repo: 'evil/demo' }), 'issue_comment'],
      [commentEvent('please /try this'), 'issue_comment'],
    ] as const;
    for (const [payload, event] of ignored) {
      const reply = await deliver(payload, { event });
      assert.equal(reply.status, 202, reply.message);
      assert.match(reply.message, /^ignored/);
    }
    assert.equal((await deliver({ zen: 'hi', hook_id: 1 }, { event: 'ping' })).status, 200);
    assert.deepEqual(await published(), []);
  });

  it('answers 422, publishing nothing, for a /try it cannot read', async () => {
    const reply = await deliver(commentEvent('/try --upload-pack=evil'));
    assert.equal(reply.status, 422);
    assert.match(reply.message, /expected a builder name/);
    assert.deepEqual(await published(), []);
  });
});

/**
 * Sends a POST's headers and `body`, never ending the body, and resolves with the reply. A server that waits for the
 * rest of the body never replies: this throws after the hang guard.
 */
async function postPartly(port: number, headers: Record<string, string>, body: Buffer[] = []): Promise<{ status: number; message: string }> {
  const request = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/webhook', headers: { 'x-github-event': 'issue_comment', ...headers } });
  // The server may close the connection on the part of the body it did not read; the reply is what is checked.
  request.on('error', () => {});
  const signal = AbortSignal.timeout(hangGuardMs);
  const replied = Promise.race([
    once(request, 'response', { signal }),
    once(request, 'close', { signal }).then(() => Promise.reject(new Error('the connection closed with no reply'))),
  ]);
  request.flushHeaders();
  for (const part of body) request.write(part);
  try {
    const [response] = (await replied) as [IncomingMessage];
    return { status: response.statusCode ?? 0, message: (JSON.parse(await readBody(response)) as { message: string }).message };
  } catch (error) {
    throw new Error('no reply while the body was unsent', { cause: error });
  } finally {
    request.destroy();
  }
}

describe('webhook: a body it will not take is refused before it is read', () => {
  const catalog = parseConfig({ repos: [], builders: { quick: { type: 'command', command: 'true' } } }, 'test.json');
  const forged = 'sha256=' + '0'.repeat(64);
  const cap = 5 * 1024 * 1024;
  let server: Server;
  let port: number;
  before(async () => {
    const webhook = createWebhook({ secret, catalog, github: undefined, publisher: createMemoryQueue({ now: Date.now }), logger: silentLogger });
    server = createServer((req, res) => void webhook(req, res));
    port = await listenForTests(server);
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('answers a missing or malformed signature 401 while the body is still unsent', async () => {
    for (const signature of [undefined, 'sha1=' + '0'.repeat(40), 'sha256=xyz', `${forged}0`]) {
      const headers = signature === undefined ? {} : { 'x-hub-signature-256': signature };
      for (const length of [{ 'content-length': String(4 * 1024 * 1024) }, { 'transfer-encoding': 'chunked' }]) {
        const reply = await postPartly(port, { ...headers, ...length });
        assert.equal(reply.status, 401, `${signature} ${JSON.stringify(length)}: ${reply.message}`);
        assert.match(reply.message, /X-Hub-Signature-256/);
      }
    }
    // Unsigned and too long is unsigned first: the length of a body nobody signed is not worth discussing.
    assert.equal((await postPartly(port, { 'content-length': String(50 * 1024 * 1024) })).status, 401);
  });

  it('answers a declared length over the cap 413 while the body is still unsent', async () => {
    const reply = await postPartly(port, { 'x-hub-signature-256': forged, 'content-length': String(50 * 1024 * 1024) });
    assert.equal(reply.status, 413, reply.message);
    assert.match(reply.message, /larger than 5242880 bytes/);
  });

  it('answers a chunked body 413 as soon as it passes the cap', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 'a');
    const chunks = Array.from({ length: cap / chunk.length + 1 }, () => Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]));
    const reply = await postPartly(port, { 'x-hub-signature-256': forged, 'transfer-encoding': 'chunked' }, chunks);
    assert.equal(reply.status, 413, reply.message);
  });

  it('reads a body up to the cap, and answers a forged signature over it 401', async () => {
    const body = Buffer.alloc(cap, ' ');
    const reply = await postPartly(port, { 'x-hub-signature-256': forged, 'content-length': String(body.length) }, [body]);
    assert.equal(reply.status, 401, reply.message);
    assert.match(reply.message, /does not match the body/);
  });
});

describe('parseTryComment', () => {
  it('reads builders, make and tests=, and nothing from a comment without the command', () => {
    assert.deepEqual(parseTryComment('/try'), {});
    assert.deepEqual(parseTryComment('/try linux-amd64,linux-386 go-tree'), { builders: ['linux-amd64', 'linux-386', 'go-tree'] });
    assert.deepEqual(parseTryComment('/try make'), { mode: { kind: 'make' } });
    assert.deepEqual(parseTryComment('/try tests=go_test:os,api'), { mode: { kind: 'tests', tests: ['go_test:os', 'api'] } });
    assert.equal(parseTryComment('I will /try later'), undefined);
    assert.equal(parseTryComment('/tryhard'), undefined);
    assert.match((parseTryComment('/try $(id)') as { error: string }).error, /expected a builder name/);
    assert.match((parseTryComment('/try tests=-run') as { error: string }).error, /expected tests=NAME/);
  });
});
