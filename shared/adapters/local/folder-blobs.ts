import { randomBytes } from 'node:crypto';
import { constants, lstatSync, type Stats } from 'node:fs';
import { mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { describeDiskSpace, measureDiskSpace } from '../../core/disk-space.ts';
import { PermanentError } from '../../core/errors.ts';
import { assertBlobKey, StoreFullError, type BlobStore } from '../../ports/blobs.ts';
import type { UrlSigner } from './url-signer.ts';

export interface FolderBlobsOptions {
  /** The folder that holds the objects; created when missing. */
  root: string;
  signer: UrlSigner;
}

// Temp files carry a character no key may contain, so they can never collide with an object or be listed as one.
const TEMP_MARK = '~';
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/**
 * A blob store in a folder: each key is a file under `root`. Writes go to a temp file beside the target and are
 * renamed into place, so readers see the old object or the new one. Symlinks are never followed: a symlink on a
 * key's folder path makes every operation on that key reject; a symlink as the object itself makes reads and
 * `exists` reject, while `put` replaces the link and `delete` removes it (rename and unlink act on the link). A write
 * the folder's file system has no room for rejects with StoreFullError.
 */
export function createFolderBlobs(options: FolderBlobsOptions): BlobStore {
  const root = resolve(options.root);
  const { signer } = options;
  let rootReady: Promise<void> | undefined;
  const ensureRoot = (): Promise<void> => {
    rootReady ??= mkdir(root, { recursive: true }).then(
      () => undefined,
      (error: unknown) => {
        rootReady = undefined;
        throw error;
      },
    );
    return rootReady;
  };

  /** The key's folder segments and file path, after checking that the path cannot leave root. */
  const locate = (key: string): { dirs: string[]; file: string } => {
    assertBlobKey(key);
    const segments = key.split('/');
    const file = join(root, ...segments);
    if (!file.startsWith(root + sep)) throw new Error(`blob key ${JSON.stringify(key)} escapes the store`);
    return { dirs: segments.slice(0, -1), file };
  };

  /**
   * Walks the key's folders without following symlinks. Returns the last folder, or undefined when one is missing
   * (or is a file) and `create` is false; with `create`, makes the missing ones. The checks are synchronous: on a
   * local folder an lstat takes microseconds, while each trip through libuv's thread pool costs a context switch and,
   * for a missing path, an Error with a stack; they run on every launch and every upload.
   */
  const walkDirs = async (key: string, dirs: string[], create: boolean): Promise<string | undefined> => {
    await ensureRoot();
    let path = root;
    for (const segment of dirs) {
      path = join(path, segment);
      for (;;) {
        const stat = lstatSync(path, { throwIfNoEntry: false });
        if (stat?.isSymbolicLink()) throw new Error(`blob key ${JSON.stringify(key)}: refusing to follow a symlink`);
        if (stat?.isDirectory()) break;
        if (stat !== undefined) {
          if (!create) return undefined;
          throw new PermanentError(`blob key ${JSON.stringify(key)}: a parent of it is an object, not a folder`);
        }
        if (!create) return undefined;
        try {
          // Not synchronous: making a new inode can take ext4 milliseconds (it skips recently freed ones).
          await mkdir(path);
          break;
        } catch (error) {
          // Someone else made it meanwhile: look again to be sure it is a folder and not a link.
          if (errorCode(error) !== 'EEXIST') throw error;
        }
      }
    }
    return path;
  };

  /** The object's own entry (never followed), or undefined when there is none. */
  const lstatObject = (file: string): Stats | undefined => {
    try {
      return lstatSync(file, { throwIfNoEntry: false });
    } catch (error) {
      // ENOTDIR: a parent turned into a file after the walk.
      if (errorCode(error) === 'ENOTDIR') return undefined;
      throw error;
    }
  };

  /** Opens the object for reading, or undefined when there is none; a symlink as the object rejects. */
  const openObject = async (key: string): Promise<FileHandle | undefined> => {
    const { dirs, file } = locate(key);
    if ((await walkDirs(key, dirs, false)) === undefined) return undefined;
    let handle: FileHandle;
    try {
      handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      if (code === 'ELOOP') throw new Error(`blob key ${JSON.stringify(key)}: refusing to follow a symlink`, { cause: error });
      throw error;
    }
    try {
      if ((await handle.stat()).isFile()) return handle;
    } catch (error) {
      await handle.close();
      throw error;
    }
    await handle.close();
    return undefined;
  };

  /** Writes the chunks to a temp file beside the object, then renames it into place; no trace is left on failure. */
  const write = async (
    key: string,
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    maxBytes: number | undefined,
  ): Promise<{ bytes: number }> => {
    const { dirs, file } = locate(key);
    const temp = `${file}${TEMP_MARK}${randomBytes(8).toString('hex')}`;
    let handle: FileHandle;
    try {
      await walkDirs(key, dirs, true);
      handle = await open(temp, 'wx');
    } catch (error) {
      throw await asStoreFull(key, error);
    }
    let bytes = 0;
    try {
      try {
        for await (const chunk of chunks) {
          bytes += chunk.byteLength;
          if (maxBytes !== undefined && bytes > maxBytes) {
            throw new PermanentError(`blob ${JSON.stringify(key)} is larger than the limit of ${maxBytes} bytes`);
          }
          await handle.write(chunk);
        }
        // Without this a crash soon after the rename could leave an empty or short object under the key.
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await rename(temp, file).catch((error: unknown) => {
        const code = errorCode(error);
        if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST') {
          throw new PermanentError(`blob key ${JSON.stringify(key)} is a folder of other objects`, { cause: error });
        }
        throw error;
      });
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw await asStoreFull(key, error);
    }
    return { bytes };
  };

  /** ENOSPC (or a quota's EDQUOT) as a StoreFullError that says what the folder's file system has left. */
  const asStoreFull = async (key: string, error: unknown): Promise<unknown> => {
    const code = errorCode(error);
    if (code !== 'ENOSPC' && code !== 'EDQUOT') return error;
    const space = await measureDiskSpace(root);
    const left = space === undefined ? `the file system of ${root} is full` : describeDiskSpace(space);
    return new StoreFullError(`no room for blob ${JSON.stringify(key)}: ${left}`, { cause: error });
  };

  return {
    async put(key, data) {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      await write(key, [bytes], undefined);
    },

    async putStream(key, source, streamOptions) {
      return write(key, source, streamOptions?.maxBytes);
    },

    async get(key) {
      const handle = await openObject(key);
      if (handle === undefined) return undefined;
      try {
        return new Uint8Array(await handle.readFile());
      } finally {
        await handle.close();
      }
    },

    async getStream(key) {
      const handle = await openObject(key);
      // The open handle pins this version of the object: a rename that replaces it later does not change what is read.
      return handle?.createReadStream({ autoClose: true });
    },

    async exists(key) {
      const { dirs, file } = locate(key);
      if ((await walkDirs(key, dirs, false)) === undefined) return false;
      const stat = lstatObject(file);
      if (stat?.isSymbolicLink()) throw new Error(`blob key ${JSON.stringify(key)}: refusing to follow a symlink`);
      return stat?.isFile() ?? false;
    },

    async list(prefix) {
      await ensureRoot();
      const keys: string[] = [];
      const walk = async (dir: string, relative: string): Promise<void> => {
        const entries = await readdir(dir, { withFileTypes: true }).catch((error: unknown) => {
          if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return [];
          throw error;
        });
        for (const entry of entries) {
          // Temp files and anything else no key could name are skipped; so are symlinks (neither file nor folder).
          if (!SEGMENT.test(entry.name)) continue;
          const key = relative === '' ? entry.name : `${relative}/${entry.name}`;
          if (entry.isDirectory()) {
            const asFolder = `${key}/`;
            if (asFolder.startsWith(prefix) || prefix.startsWith(asFolder)) await walk(join(dir, entry.name), key);
          } else if (entry.isFile() && key.startsWith(prefix)) {
            keys.push(key);
          }
        }
      };
      await walk(root, '');
      return keys.sort();
    },

    async delete(key) {
      const { dirs, file } = locate(key);
      if ((await walkDirs(key, dirs, false)) === undefined) return;
      const stat = lstatObject(file);
      // A folder is not an object, so there is nothing to delete. Folders left empty stay: removing them would
      // race with a concurrent put that is about to rename a file into the same folder.
      if (stat === undefined || stat.isDirectory()) return;
      await unlink(file).catch((error: unknown) => {
        if (errorCode(error) !== 'ENOENT') throw error;
      });
    },

    async signUrl(key, signOptions) {
      return signer.sign(key, signOptions);
    },
  };
}

function errorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}
