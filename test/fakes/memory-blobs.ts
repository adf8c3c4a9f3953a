import { PermanentError } from '../../shared/core/errors.ts';
import { assertBlobKey, type BlobStore } from '../../shared/ports/blobs.ts';
import type { UrlSigner } from '../../shared/adapters/local/url-signer.ts';

/** A blob store in a Map, with the folder store's semantics; nothing outlives the object. Invalid keys throw. */
export function createMemoryBlobs(options: { signer: UrlSigner }): BlobStore {
  const objects = new Map<string, Uint8Array>();
  const { signer } = options;

  // Each object is replaced whole and never mutated, so a reader holding the old array keeps the old version.
  const read = (key: string): Uint8Array | undefined => {
    assertBlobKey(key);
    const value = objects.get(key);
    return value === undefined ? undefined : value.slice();
  };

  return {
    async put(key, data) {
      assertBlobKey(key);
      objects.set(key, typeof data === 'string' ? new TextEncoder().encode(data) : data.slice());
    },

    async putStream(key, source, streamOptions) {
      assertBlobKey(key);
      const maxBytes = streamOptions?.maxBytes;
      const chunks: Uint8Array[] = [];
      let bytes = 0;
      for await (const chunk of source) {
        bytes += chunk.byteLength;
        if (maxBytes !== undefined && bytes > maxBytes) {
          throw new PermanentError(`blob ${JSON.stringify(key)} is larger than the limit of ${maxBytes} bytes`);
        }
        chunks.push(chunk.slice());
      }
      const whole = new Uint8Array(bytes);
      let offset = 0;
      for (const chunk of chunks) {
        whole.set(chunk, offset);
        offset += chunk.byteLength;
      }
      objects.set(key, whole);
      return { bytes };
    },

    async get(key) {
      return read(key);
    },

    async getStream(key) {
      const value = read(key);
      if (value === undefined) return undefined;
      return (async function* () {
        yield value;
      })();
    },

    async exists(key) {
      assertBlobKey(key);
      return objects.has(key);
    },

    async list(prefix) {
      return [...objects.keys()].filter((key) => key.startsWith(prefix)).sort();
    },

    async delete(key) {
      assertBlobKey(key);
      objects.delete(key);
    },

    async signUrl(key, signOptions) {
      return signer.sign(key, signOptions);
    },
  };
}
