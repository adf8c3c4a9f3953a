/** The last bytes pushed into it, and nothing more. */
export interface ByteRing {
  push(data: Buffer): void;
  /** What it holds, oldest byte first; valid until the next push. */
  contents(): Buffer;
}

/** A ring of the last `capacity` bytes pushed, in one buffer allocated by the first push (many rings never need it). */
export function createByteRing(capacity: number): ByteRing {
  let ring: Buffer | undefined;
  let total = 0;
  return {
    push(data) {
      ring ??= Buffer.alloc(capacity);
      // Only the last `capacity` bytes of a chunk can matter: a big one is never copied whole.
      const fresh = data.length > capacity ? data.subarray(data.length - capacity) : data;
      const at = (total + data.length - fresh.length) % capacity;
      const first = Math.min(fresh.length, capacity - at);
      fresh.copy(ring, at, 0, first);
      fresh.copy(ring, 0, first);
      total += data.length;
    },
    contents() {
      if (ring === undefined) return Buffer.alloc(0);
      if (total <= capacity) return ring.subarray(0, total);
      const at = total % capacity;
      return Buffer.concat([ring.subarray(at), ring.subarray(0, at)]);
    },
  };
}
