import { createInterface } from 'node:readline';

/** How a docker build or load stream ended: the error it reported, with the failing step and its last lines. */
export interface DockerStreamOutcome {
  /** Docker's error message, or undefined when the stream reported none. */
  error: string | undefined;
  /** The last "Step N/M : ..." line seen, which is the failing one when there is an error. */
  step: string | undefined;
  /** The last lines printed since that step began (at most `tailLines`). */
  tail: string[];
}

const tailLines = 40;

/**
 * Reads Docker's JSON-lines progress (from build, load, import or pull) to its end, passing every text line to `onLine`.
 * Resolves with the error the engine reported in the stream, if any; rejects only when the stream itself fails.
 */
export async function followDockerStream(stream: NodeJS.ReadableStream, onLine: (line: string) => void): Promise<DockerStreamOutcome> {
  let error: string | undefined;
  let step: string | undefined;
  let tail: string[] = [];
  const emit = (text: string) => {
    for (const raw of text.split(/\r?\n/)) {
      const line = raw.trimEnd();
      if (line === '') continue;
      if (/^Step \d+\/\d+ : /.test(line)) {
        step = line;
        tail = [];
      } else if (!/^ ---> |^Removing intermediate container /.test(line)) {
        // The engine's bookkeeping lines say nothing about why a step failed.
        tail.push(line);
        if (tail.length > tailLines) tail.shift();
      }
      onLine(line);
    }
  };
  for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
    if (line.trim() === '') continue;
    let event: DockerEvent;
    try {
      event = JSON.parse(line) as DockerEvent;
    } catch {
      emit(line);
      continue;
    }
    if (typeof event.stream === 'string') emit(event.stream);
    else if (typeof event.status === 'string' && event.progressDetail === undefined) emit(event.id === undefined ? event.status : `${event.id}: ${event.status}`);
    const message = event.errorDetail?.message ?? event.error;
    if (typeof message === 'string') {
      error = message;
      onLine(`error: ${message}`);
    }
  }
  return { error, step, tail };
}

interface DockerEvent {
  stream?: unknown;
  status?: unknown;
  id?: unknown;
  progressDetail?: unknown;
  error?: unknown;
  errorDetail?: { message?: unknown };
}
