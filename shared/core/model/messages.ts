import { z } from 'zod';
import { isGitHubLogin, isName, isSafeBranchName, isTestName } from './refs.ts';
import { describeError, PermanentError } from '../errors.ts';

/**
 * Versioned message schemas: every message carries `v`, and every edge parses with these before it trusts a
 * field. A message that fails is a PermanentError naming the field, bound for the dead letters.
 */

const id = z.string().regex(/^[0-9a-f]{24}$/, 'expected a 24-hex-digit ID');
const commitHash = z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, 'expected a full commit hash');
const name = z.string().refine(isName, 'expected a lower-case name');

export const topics = {
  pollTick: 'poll-tick',
  reapTick: 'reap-tick',
  buildRequested: 'build-requested',
  taskReady: 'task-ready',
  taskFinished: 'task-finished',
  testsFinished: 'tests-finished',
  buildFinished: 'build-finished',
  /** A build moved short of its verdict (queued for a trybot, running): statuses beside the commit follow it. */
  buildMoved: 'build-moved',
  /** Someone asks for a change to be built before it lands. */
  tryRequested: 'try-requested',
  /** Cloud Storage's notification that an object under `results/` was written (the embedded blob server mimics it). */
  resultLanded: 'result-landed',
  /** Where Pub/Sub forwards a message whose function kept failing past the subscription's delivery attempts. */
  deadLetters: 'dead-letters',
} as const;
export type Topic = (typeof topics)[keyof typeof topics];

export const PollTick = z.strictObject({ v: z.literal(1), repos: z.array(name).optional() });
export const ReapTick = z.strictObject({ v: z.literal(1) });
export const BuildRequested = z.strictObject({
  v: z.literal(1),
  buildId: id,
  repo: name,
  commit: commitHash,
  builder: name,
});
export const TaskReady = z.strictObject({ v: z.literal(1), taskId: id });
export const TaskFinished = z.strictObject({
  v: z.literal(1),
  taskId: id,
  /** `result`: the result object landed. `exited`: the worker is gone, with or without one. */
  cause: z.enum(['result', 'exited']),
  /** For `exited`: why the worker ended. */
  exit: z
    .strictObject({
      reason: z.enum(['exited', 'deadline', 'vanished']),
      code: z.number().int().nullable(),
      signal: z.string().nullable(),
      /** What the runtime itself saw go wrong for this worker, such as its result refused for want of space. */
      note: z.string().max(8192).optional(),
    })
    .optional(),
});
/** Every shard (or retry) task of a sharded build is in: time to merge. */
export const TestsFinished = z.strictObject({ v: z.literal(1), buildId: id });
export const BuildFinished = z.strictObject({ v: z.literal(1), buildId: id });
export const BuildMoved = z.strictObject({ v: z.literal(1), buildId: id });

export const TryModeSchema = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({ kind: z.literal('full') }),
    z.strictObject({ kind: z.literal('make') }),
    z.strictObject({ kind: z.literal('tests'), tests: z.array(z.string().refine(isTestName, 'expected a test unit name')).min(1).max(200) }),
  ],
  { error: 'expected { "kind": "full" }, { "kind": "make" } or { "kind": "tests", "tests": [...] }' },
);
/**
 * A trybot request: build this exact commit of a watched repo (the head of a pull request, or of a ref) before it
 * lands. `requester` is a GitHub login; it runs only if that person is trusted, or once a trusted person approves
 * this commit. `base` is what the change is against, for builders chosen by the files it touches.
 */
export const TryRequested = z.strictObject({
  v: z.literal(1),
  repo: name,
  commit: commitHash,
  pullRequest: z.number().int().min(1).max(2 ** 31).optional(),
  ref: z.string().refine(isSafeBranchName, 'expected a ref name of letters, digits, ".", "_", "/" or "-"').optional(),
  base: commitHash.optional(),
  requester: z.string().refine(isGitHubLogin, 'expected a GitHub login'),
  builders: z.array(name).min(1).max(64).optional(),
  mode: TryModeSchema.optional(),
  /** Where the request came from, for the record. */
  via: z.enum(['topic', 'cli', 'comment']).optional(),
});
/** A worker's result object landed in the blob store: its task can be collected now. */
export const ResultLanded = z.strictObject({ v: z.literal(1), taskId: id });

export type PollTick = z.infer<typeof PollTick>;
export type ReapTick = z.infer<typeof ReapTick>;
export type BuildRequested = z.infer<typeof BuildRequested>;
export type TaskReady = z.infer<typeof TaskReady>;
export type TaskFinished = z.infer<typeof TaskFinished>;
export type TestsFinished = z.infer<typeof TestsFinished>;
export type BuildFinished = z.infer<typeof BuildFinished>;
export type BuildMoved = z.infer<typeof BuildMoved>;
export type TryRequested = z.infer<typeof TryRequested>;
export type ResultLanded = z.infer<typeof ResultLanded>;

/** Parses and validates raw message bytes; throws PermanentError naming the bad field. */
export function decode<S extends z.ZodType>(schema: S, data: Uint8Array | string, what: string): z.infer<S> {
  const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new PermanentError(`${what}: not JSON (${describeError(error)})`, { cause: error });
  }
  return validate(schema, json, what);
}

/** Validates a parsed value; throws PermanentError naming each bad field and what was expected. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new PermanentError(`${what}: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

/** "field.path: what was expected; other: ..." */
export function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      // A record key's own issues say what was wrong with it, where zod's says only "Invalid key in record".
      const message = issue.code === 'invalid_key' ? issue.issues.map((inner) => inner.message).join('; ') : issue.message;
      return `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${message}`;
    })
    .join('; ');
}
