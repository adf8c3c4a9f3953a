import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { endpointsOf, type Endpoint } from '../model/endpoints.ts';
import { moduleCacheKey } from '../model/ids.ts';
import type { Build, Builder, GoModules, Step } from '../model/types.ts';

/**
 * A Go module's dependencies: fetched once per set of `go.mod`/`go.sum` files by a task of their own (the only one
 * that may reach the network), kept as one content-addressed blob, and unpacked read-only for every other step.
 */

/** The step name of a build's module-fetch task. */
export const modulesStep = 'modules';

/** The files that say which modules a tree needs: every module's and workspace's requirements and checksums. */
const moduleFileNames = new Set(['go.mod', 'go.sum', 'go.work', 'go.work.sum']);

/** More than this in module files is not a module's requirements; it fails the build rather than fill memory. */
const maxModuleFileBytes = 32 << 20;

/** What a tree's module files say about its dependencies. */
export interface ModuleFiles {
  /** Every go.mod, go.sum, go.work and go.work.sum outside `vendor/` and `testdata/`, sorted by path. */
  files: Array<{ path: string; text: string }>;
  /** The root module vendors its dependencies (`vendor/modules.txt`): the go command builds from there. */
  vendored: boolean;
}

/** What a build needs before its steps: nothing, or a module cache made by a fetch task (or an earlier one). */
export type ModuleNeeds = { kind: 'none'; why: string } | { kind: 'fetch'; key: string };

/** Reads the module files out of a commit's gzipped tarball. Rejects on a damaged tarball or too much module text. */
export async function moduleFilesOf(tarball: Uint8Array): Promise<ModuleFiles> {
  const files: ModuleFiles['files'] = [];
  let vendored = false;
  let total = 0;
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      const path = entry.path.replace(/^(\.\/)+/, '');
      if (path === 'vendor/modules.txt') vendored = true;
      const segments = path.split('/');
      const counted = entry.type === 'File' && moduleFileNames.has(segments.at(-1) ?? '') && !segments.some((segment) => segment === 'vendor' || segment === 'testdata');
      if (!counted) {
        entry.resume();
        return;
      }
      total += entry.size;
      if (total > maxModuleFileBytes) {
        parser.abort(new Error(`the tree's go.mod and go.sum files hold more than ${maxModuleFileBytes} bytes`));
        return;
      }
      const chunks: Buffer[] = [];
      entry.on('data', (chunk: Buffer) => chunks.push(chunk));
      entry.on('end', () => files.push({ path, text: Buffer.concat(chunks).toString('utf8') }));
    },
  });
  await pipeline(Readable.from([tarball]), createGunzip(), parser);
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { files, vendored };
}

/**
 * Whether a tree needs its modules fetched, and the key of the cache that holds them: the module files, the proxy
 * and checksum settings, the host type (its Go) and what the builder builds, so that any build that would fetch the
 * same modules the same way finds the same cache.
 */
export function moduleNeedsOf(tree: ModuleFiles, modules: GoModules, builder: Pick<Builder, 'env'>, hostType: string): ModuleNeeds {
  const root = tree.files.find((file) => file.path === 'go.mod');
  if (root === undefined) return { kind: 'none', why: 'no go.mod at the root' };
  if (tree.vendored) return { kind: 'none', why: 'vendored (vendor/modules.txt)' };
  const workspace = tree.files.some((file) => file.path === 'go.work');
  if (!workspace && !/^\s*require\b/m.test(root.text)) return { kind: 'none', why: 'go.mod requires no module' };
  return { kind: 'fetch', key: moduleCacheKey(tree.files, { hostType, modules, env: builder.env }) };
}

/**
 * The fetch task's step: load every package the builder vets, builds and tests, with their tests' imports, which
 * downloads exactly the modules those need. `-mod=readonly` makes a go.sum that lacks an entry an error instead of
 * an addition, and go checks every download against go.sum.
 */
export function fetchStep(modules: GoModules): Step {
  const argv = ['go', 'list', '-mod=readonly', '-deps', '-test', '-f', '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}}{{end}}{{end}}', ...modules.packages];
  return { name: `go list -deps -test ${modules.packages.join(' ')}`, argv, fetchesModules: true };
}

/** The fetch task's environment: the builder's proxy and checksum database, in place of `GOPROXY=off`. */
export function fetchEnv(modules: GoModules): Record<string, string> {
  return { GOPROXY: modules.proxy, GOSUMDB: modules.sumDb };
}

/** The local directories a GOPROXY list reads from (its `file://` entries), which a fetch worker must be able to see. */
export function proxyDirectories(proxy: string): string[] {
  return proxy
    .split(/[,|]/)
    .filter((entry) => entry.startsWith('file://'))
    .map((entry) => decodeURIComponent(new URL(entry).pathname));
}

/**
 * Where a fetch task's steps need to connect: each http(s) proxy, and the checksum database, which go asks for
 * through a proxy that serves it or else directly at its name (`sum.golang.org`, or the URL a GOSUMDB value gives).
 * Undefined when the list has `direct`: go then fetches from each module's own host, which cannot be known ahead.
 */
export function fetchEgress(modules: GoModules): Endpoint[] | undefined {
  const entries = modules.proxy.split(/[,|]/);
  if (entries.includes('direct')) return undefined;
  const [name = '', url] = modules.sumDb.split(' ');
  const sumDb = modules.sumDb === 'off' ? [] : [url ?? `https://${name.split('+')[0] ?? name}`];
  return endpointsOf([...entries.filter((entry) => /^https?:\/\//.test(entry)), ...sumDb]);
}

/** The module cache a build's tasks unpack, when it has one ready. */
export function readyModuleKey(build: Build): string | undefined {
  return build.modules?.phase === 'ready' ? build.modules.key : undefined;
}
