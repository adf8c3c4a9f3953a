import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../shared/core/config/config.ts';
import { silentLogger } from '../../shared/ports/log.ts';
import { dashboardHosts } from '../../shared/runtimes/local/dashboard-hosts.ts';
import { startLocalRuntime, type LocalRuntime } from '../../shared/runtimes/local/local-runtime.ts';
import { readBody } from '../fakes/http.ts';

/** One request to the runtime's port with the `Host` header a browser would send for `host`. */
async function withHost(runtime: LocalRuntime, host: string, path = '/api/repos', method = 'GET') {
  const { port } = new URL(runtime.url);
  const req = request({ host: '127.0.0.1', port, path, method, headers: { host } });
  req.end();
  const [response] = (await once(req, 'response')) as [IncomingMessage];
  return { status: response.statusCode, headers: response.headers, body: await readBody(response) };
}

describe('the local dashboard answers only under the names it serves', () => {
  let dir: string;
  let runtime: LocalRuntime;
  let port: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hermetic-host-'));
    const catalog = parseConfig({ repos: [], builders: { quick: { type: 'command', command: 'true' } } }, 'host-test.json');
    runtime = await startLocalRuntime({ dataDir: join(dir, 'data'), catalog, logger: silentLogger, pollIntervalMs: 0, port: 0, containers: 'off' });
    port = new URL(runtime.url).port;
  });
  after(async () => {
    await runtime?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves its loopback names and addresses at its port', async () => {
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, `LOCALHOST:${port}`]) {
      const reply = await withHost(runtime, host);
      assert.equal(reply.status, 200, `${host}: ${reply.body}`);
    }
  });

  it('refuses any other Host 421, as a DNS-rebinding page on the web would send, with the same headers', async () => {
    for (const host of [`evil.example:${port}`, 'evil.example', `localhost:${Number(port) + 1}`, `127.0.0.1.evil.example:${port}`]) {
      for (const path of ['/', '/api/repos', '/log/000000000000000000000000']) {
        const reply = await withHost(runtime, host, path);
        assert.equal(reply.status, 421, `${host}${path}`);
        assert.match(reply.body, new RegExp(`answers at localhost:${port}, 127\\.0\\.0\\.1:${port}, \\[::1\\]:${port}, not at Host ${host.replace(/[.[\]]/g, '\\$&')}`));
        assert.equal(reply.headers['x-content-type-options'], 'nosniff');
      }
    }
  });

  it('leaves the webhook and the blob endpoint, which check signatures instead, to answer for themselves', async () => {
    assert.equal((await withHost(runtime, 'hooks.example', '/webhook', 'POST')).status, 503, 'no webhook secret: 503, not 421');
    assert.notEqual((await withHost(runtime, 'evil.example', '/blobs/anything')).status, 421);
  });
});

describe('dashboardHosts', () => {
  it('adds the address it listens on, bracketed when IPv6, and the public URL\'s host', () => {
    assert.deepEqual(dashboardHosts({ address: '127.0.0.1', family: 'IPv4', port: 8080 }, 'http://127.0.0.1:8080'), ['localhost:8080', '127.0.0.1:8080', '[::1]:8080']);
    assert.deepEqual(dashboardHosts({ address: '192.0.2.7', family: 'IPv4', port: 8080 }, 'https://Builds.Example.com/'), [
      'localhost:8080',
      '127.0.0.1:8080',
      '[::1]:8080',
      '192.0.2.7:8080',
      'builds.example.com',
    ]);
    assert.deepEqual(dashboardHosts({ address: 'fd00::7', family: 'IPv6', port: 80 }, 'http://[fd00::7]'), ['localhost', '127.0.0.1', '[::1]', '[fd00::7]']);
  });

  it('takes every interface address when it listens on all of them', () => {
    const hosts = dashboardHosts({ address: '0.0.0.0', family: 'IPv4', port: 9000 }, 'http://localhost:9000');
    assert.ok(hosts.includes('127.0.0.1:9000'));
    assert.ok(hosts.every((host) => /:9000$/.test(host)), hosts.join(', '));
  });
});
