import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { strToU8, zipSync } from 'fflate';

/** One module version a test proxy serves: its files, `go.mod` among them. */
export interface ProxiedModule {
  path: string;
  version: string;
  files: Record<string, string>;
}

export interface GoProxy {
  /** The proxy as GOPROXY takes it: `file:///...`. */
  url: string;
  dir: string;
  /** The go.sum lines of every module it serves, as go would write them. */
  goSum: string;
}

/**
 * Writes a Go module proxy in the GOPROXY protocol's file layout (`<module>/@v/list`, `.info`, `.mod`, `.zip`) under
 * `dir`, holding `modules`, and works out their go.sum lines (go's h1: hashes), so tests need nothing outside the
 * machine. Lower-case module paths only (the layout escapes upper case).
 */
export async function writeGoProxy(dir: string, modules: readonly ProxiedModule[]): Promise<GoProxy> {
  const sums: string[] = [];
  for (const module of modules) {
    if (module.path !== module.path.toLowerCase()) throw new Error(`writeGoProxy: ${module.path} has upper case`);
    const gomod = module.files['go.mod'];
    if (gomod === undefined) throw new Error(`writeGoProxy: ${module.path} has no go.mod`);
    const at = join(dir, module.path, '@v');
    await mkdir(at, { recursive: true });
    const prefix = `${module.path}@${module.version}/`;
    const entries = Object.entries(module.files).map(([name, text]) => [`${prefix}${name}`, text] as const);
    await writeFile(join(at, 'list'), `${module.version}\n`);
    await writeFile(join(at, `${module.version}.info`), JSON.stringify({ Version: module.version, Time: '2024-01-01T00:00:00Z' }));
    await writeFile(join(at, `${module.version}.mod`), gomod);
    await writeFile(join(at, `${module.version}.zip`), zipSync(Object.fromEntries(entries.map(([name, text]) => [name, strToU8(text)]))));
    sums.push(`${module.path} ${module.version} ${hash1(entries)}`);
    sums.push(`${module.path} ${module.version}/go.mod ${hash1([['go.mod', gomod]])}`);
  }
  return { url: pathToFileURL(dir).href, dir, goSum: `${sums.join('\n')}\n` };
}

/** go's dirhash.Hash1: the SHA-256 of the sorted lines "<sha256 hex>  <name>", base64, after `h1:`. */
function hash1(files: ReadonlyArray<readonly [string, string]>): string {
  const lines = [...files]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, text]) => `${createHash('sha256').update(text).digest('hex')}  ${name}\n`)
    .join('');
  return `h1:${createHash('sha256').update(lines).digest('base64')}`;
}

/** A test proxy's directory served over HTTP on `host`, counting the requests it answers. */
export interface ServedGoProxy {
  url: string;
  requests(): number;
  close(): Promise<void>;
}

export async function serveGoProxy(dir: string, host = '127.0.0.1'): Promise<ServedGoProxy> {
  const root = resolve(dir);
  let requests = 0;
  const server: Server = createServer((request, response) => {
    requests += 1;
    const path = normalize(join(root, decodeURIComponent(new URL(request.url ?? '/', 'http://proxy').pathname)));
    if (!path.startsWith(root + sep)) {
      response.writeHead(404).end();
      return;
    }
    readFile(path).then(
      (body) => response.writeHead(200).end(body),
      () => response.writeHead(404).end('not found'),
    );
  });
  await new Promise<void>((done) => server.listen(0, host, done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    requests: () => requests,
    close: () => new Promise((done) => server.close(() => done())),
  };
}
