import { createByteRing } from './byte-ring.ts';

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

/** Where a cut log dropped bytes: `[from, to)` of everything written, replaced at `from` by the marker line. */
export interface LogCut {
  from: number;
  to: number;
  /** Where byte `to` (the first of the tail) lies in the uploaded log: just after the marker. */
  tailAt: number;
}

/** What landed, for the result's `log` field. */
export interface LogSummary {
  bytes: number;
  truncated: boolean;
  chunks: number;
  /** Set when the log was cut. */
  cut?: LogCut;
  /** Set when some of the log could not be uploaded. */
  error?: string;
}

/** A log being streamed to its chunk URLs. */
export interface ChunkedLog {
  /** Appends bytes; never blocks and never throws, so a step's pipes drain at their own pace. */
  write(data: Uint8Array | string): void;
  /** Every byte offered to write so far, including those the cut dropped: the offsets of steps' log ranges. */
  written(): number;
  /** Adds the cut marker and the tail if the log was cut, uploads what is left and says what landed. Never rejects. */
  close(): Promise<LogSummary>;
}

/** The line that stands in the log where its middle was cut. */
export function cutMarker(headBytes: number, droppedBytes: number, tailBytes: number): string {
  return `[hermetic: log cut at ${headBytes} bytes; ${droppedBytes} more bytes dropped; the last ${tailBytes} bytes follow]\n`;
}

/**
 * Where `[start, end)` of everything written lies in the uploaded log. A range that reaches into the cut holds the
 * marker in place of what was dropped (only the marker, when all of it was); an empty range stays empty.
 */
export function keptRange(range: { start: number; end: number }, cut: LogCut | undefined): { start: number; end: number } {
  if (cut === undefined) return range;
  const shift = (offset: number) => cut.tailAt + offset - cut.to;
  const start = range.start <= cut.from ? range.start : range.start >= cut.to ? shift(range.start) : cut.from;
  if (range.end === range.start) return { start, end: start };
  const end = range.end <= cut.from ? range.end : range.end >= cut.to ? shift(range.end) : cut.tailAt;
  return { start, end };
}

/**
 * A log streamed to a fixed list of chunk URLs: chunk i holds bytes [i*chunkBytes, (i+1)*chunkBytes) and is
 * re-uploaded whole as it grows, then left alone once full. A log longer than the budget (all chunks) keeps its
 * head, streamed as it comes, and its tail, held in a ring of fixed size until close, with a marker line between
 * saying how much was cut: what a failing step printed last, and the line saying how it exited, are kept. Memory
 * stays bounded whatever the log's length. Uploads run one at a time in the background; writes meanwhile only buffer.
 */
export function createChunkedLog(options: ChunkedLogOptions): ChunkedLog {
  const { chunkUrls, chunkBytes, flushIntervalMs, put } = options;
  const budget = chunkUrls.length * chunkBytes;
  // Room for the longest marker this log could need, with a newline first when the head ends mid-line.
  const reserve = Buffer.byteLength(`\n${cutMarker(budget, Number.MAX_SAFE_INTEGER, budget)}`);
  // Half of what is left after the marker for the tail, the rest for the head.
  const tailBytes = Math.floor((budget - reserve) / 2);
  const headLimit = budget - reserve - tailBytes;
  // Every byte past the head: all of them are kept when the whole log fits the budget, only the tail when not.
  const rest = createByteRing(budget - headLimit);

  const chunks: (Buffer | undefined)[] = [];
  const uploaded: number[] = chunkUrls.map(() => 0);
  const failures = new Map<number, string>();
  let committed = 0;
  let lastByte = 0x0a;
  let offered = 0;
  let cut: LogCut | undefined;
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
      const room = Math.max(0, headLimit - committed);
      if (buffer.length <= room) {
        append(buffer);
        return;
      }
      if (room > 0) append(buffer.subarray(0, room));
      rest.push(buffer.subarray(room));
    },

    written: () => offered,

    async close() {
      if (!closed) {
        const held = rest.contents();
        if (offered <= budget) {
          append(held);
        } else {
          // The tail starts at a line, unless its first line is all of it.
          const last = held.subarray(held.length - tailBytes);
          const newline = last.indexOf(0x0a);
          const tail = newline === -1 || newline === last.length - 1 ? last : last.subarray(newline + 1);
          const from = committed;
          const to = offered - tail.length;
          append(Buffer.from(`${lastByte === 0x0a ? '' : '\n'}${cutMarker(from, to - from, tail.length)}`));
          cut = { from, to, tailAt: committed };
          append(tail);
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
        truncated: cut !== undefined,
        chunks: Math.ceil(committed / chunkBytes),
        ...(cut === undefined ? {} : { cut }),
      };
      if (lost.length > 0) summary.error = `log upload failed (${lost.join('; ')})`;
      return summary;
    },
  };
}
