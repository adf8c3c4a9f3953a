/** Uploads one object; rejects when it could not, after its own retries. */
export type PutChunk = (url: string, body: Uint8Array, what: string) => Promise<void>;

/** Where a chunked log goes and how often. */
export interface ChunkedLogOptions {
  /** One signed PUT URL per chunk, in order. */
  chunkUrls: readonly string[];
  chunkBytes: number;
  /** The growing chunk is re-uploaded at most this often. */
  flushIntervalMs: number;
  put: PutChunk;
}

/** What landed, for the result's `log` field. */
export interface LogSummary {
  bytes: number;
  truncated: boolean;
  chunks: number;
  /** Set when some of the log could not be uploaded. */
  error?: string;
}

/** A log being streamed to its chunk URLs. */
export interface ChunkedLog {
  /** Appends bytes; never blocks and never throws, so a step's pipes drain at their own pace. */
  write(data: Uint8Array | string): void;
  /** Every byte offered to write so far, including those the cut dropped: the offsets of steps' log ranges. */
  written(): number;
  /** Adds the cut notice if the log was cut, uploads what is left and says what landed. Never rejects. */
  close(): Promise<LogSummary>;
}

/** The last line of a log that was cut at its budget. */
export function cutNotice(keptBytes: number, droppedBytes: number): string {
  return `[hermetic: log cut at ${keptBytes} bytes; ${droppedBytes} more bytes dropped]\n`;
}

/**
 * A log streamed to a fixed list of chunk URLs: chunk i holds bytes [i*chunkBytes, (i+1)*chunkBytes) and is
 * re-uploaded whole as it grows, then left alone once full. Past the budget (all chunks full) the log is cut,
 * keeping room for the cut notice. Uploads run one at a time in the background; writes meanwhile only buffer.
 */
export function createChunkedLog(options: ChunkedLogOptions): ChunkedLog {
  const { chunkUrls, chunkBytes, flushIntervalMs, put } = options;
  const budget = chunkUrls.length * chunkBytes;
  // Room for the longest notice this log could need, with a newline first when the cut falls mid-line.
  const reserve = Buffer.byteLength(`\n${cutNotice(budget, Number.MAX_SAFE_INTEGER)}`);
  const softLimit = budget - reserve;

  const chunks: (Buffer | undefined)[] = [];
  const uploaded: number[] = chunkUrls.map(() => 0);
  const failures = new Map<number, string>();
  let committed = 0;
  let lastByte = 0x0a;
  // Bytes past softLimit are held back until the end: if the whole log fits the budget they are kept, and if not,
  // the log is cut at softLimit and they are dropped.
  let held: Buffer[] = [];
  let heldBytes = 0;
  let offered = 0;
  let cut = false;
  let closed = false;
  let pumping: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let lastFlushAt = Number.NEGATIVE_INFINITY;
  let lastPassFailed = false;

  function fill(index: number): number {
    return Math.max(0, Math.min(chunkBytes, committed - index * chunkBytes));
  }

  function append(data: Buffer): void {
    let offset = 0;
    let filledOne = false;
    while (offset < data.length) {
      const index = Math.floor(committed / chunkBytes);
      const position = committed % chunkBytes;
      const chunk = chunks[index] ?? Buffer.alloc(chunkBytes);
      chunks[index] = chunk;
      const n = Math.min(chunkBytes - position, data.length - offset);
      data.copy(chunk, position, offset, offset + n);
      offset += n;
      committed += n;
      if (position + n === chunkBytes) filledOne = true;
    }
    if (data.length > 0) lastByte = data[data.length - 1] ?? lastByte;
    kick(filledOne);
  }

  function dirty(): { any: boolean; full: boolean } {
    let any = false;
    let full = false;
    for (let index = 0; index * chunkBytes < committed; index++) {
      const length = fill(index);
      if (length > (uploaded[index] ?? 0)) {
        any = true;
        if (length === chunkBytes) full = true;
      }
    }
    return { any, full };
  }

  /** Starts an upload pass now (a chunk filled) or when the flush interval allows; coalesces with one running. */
  function kick(urgent: boolean): void {
    if (closed || pumping !== undefined) return;
    const wait = urgent && !lastPassFailed ? 0 : Math.max(0, lastFlushAt + flushIntervalMs - Date.now());
    if (wait === 0) {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      startPass();
    } else if (timer === undefined) {
      timer = setTimeout(() => {
        timer = undefined;
        startPass();
      }, wait);
    }
  }

  function startPass(): void {
    if (pumping !== undefined) return;
    lastFlushAt = Date.now();
    pumping = uploadPass().finally(() => {
      pumping = undefined;
      const state = dirty();
      if (!closed && state.any) kick(state.full);
    });
  }

  async function uploadPass(): Promise<void> {
    let failed = false;
    for (let index = 0; index * chunkBytes < committed; index++) {
      const length = fill(index);
      const chunk = chunks[index];
      if (chunk === undefined || length <= (uploaded[index] ?? 0)) continue;
      const url = chunkUrls[index];
      if (url === undefined) continue;
      try {
        await put(url, chunk.subarray(0, length), `log chunk ${index}`);
        uploaded[index] = length;
        failures.delete(index);
        // A full chunk that has landed is never sent again.
        if (length === chunkBytes) chunks[index] = undefined;
      } catch (error) {
        failed = true;
        failures.set(index, error instanceof Error ? error.message : String(error));
      }
    }
    lastPassFailed = failed;
  }

  return {
    write(data) {
      if (closed) return;
      const buffer =
        typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      offered += buffer.length;
      if (cut || buffer.length === 0) return;
      const room = Math.max(0, softLimit - committed);
      if (buffer.length <= room) {
        append(buffer);
        return;
      }
      if (room > 0) append(buffer.subarray(0, room));
      const rest = buffer.subarray(room);
      if (heldBytes + rest.length <= reserve) {
        held.push(Buffer.from(rest));
        heldBytes += rest.length;
      } else {
        cut = true;
        held = [];
        heldBytes = 0;
      }
    },

    written: () => offered,

    async close() {
      if (!closed) {
        if (cut) {
          const kept = committed;
          const prefix = lastByte === 0x0a ? '' : '\n';
          append(Buffer.from(`${prefix}${cutNotice(kept, offered - kept)}`));
        } else if (heldBytes > 0) {
          append(Buffer.concat(held));
          held = [];
        }
        closed = true;
        if (timer !== undefined) clearTimeout(timer);
        timer = undefined;
      }
      while (pumping !== undefined) await pumping;
      if (dirty().any) {
        pumping = uploadPass();
        await pumping;
        pumping = undefined;
      }
      const lost = [...failures.entries()].map(([index, message]) => `chunk ${index}: ${message}`);
      const summary: LogSummary = {
        bytes: committed,
        truncated: cut,
        chunks: Math.ceil(committed / chunkBytes),
      };
      if (lost.length > 0) summary.error = `log upload failed (${lost.join('; ')})`;
      return summary;
    },
  };
}
