import { z } from 'zod';

/**
 * What crosses to and from a worker. The spec is all a worker is given: its steps and signed URLs scoped to its
 * own task's objects. The result is all it gives back, and is validated before anything trusts it.
 */

const step = z.strictObject({ name: z.string().min(1).max(200), argv: z.array(z.string()).min(1) });

export const TaskSpec = z.strictObject({
  v: z.literal(1),
  taskId: z.string().regex(/^[0-9a-f]{24}$/),
  builder: z.string(),
  attempt: z.number().int().min(1),
  steps: z.array(step).min(1),
  env: z.record(z.string(), z.string()),
  /** ms since the epoch; the agent stops its steps a little before, to upload what it has. */
  deadline: z.number().int(),
  source: z.strictObject({ url: z.url() }),
  log: z.strictObject({
    /** One signed PUT URL per chunk, in order; chunk i is rewritten as it grows, up to chunkBytes. */
    chunkUrls: z.array(z.url()).min(1),
    chunkBytes: z.number().int().min(1024),
  }),
  result: z.strictObject({ url: z.url() }),
});
export type TaskSpec = z.infer<typeof TaskSpec>;

export const TaskResult = z.strictObject({
  v: z.literal(1),
  taskId: z.string().regex(/^[0-9a-f]{24}$/),
  /** `error`: the agent could not do its job (source download failed, ...); counts as an infra failure. */
  status: z.enum(['passed', 'failed', 'timed-out', 'error']),
  startedAt: z.number().int(),
  finishedAt: z.number().int(),
  steps: z.array(
    z.strictObject({
      name: z.string(),
      exitCode: z.number().int().nullable(),
      signal: z.string().optional(),
      durationMs: z.number().int().min(0),
    }),
  ),
  log: z.strictObject({ bytes: z.number().int().min(0), truncated: z.boolean(), chunks: z.number().int().min(0) }),
  error: z.string().optional(),
});
export type TaskResult = z.infer<typeof TaskResult>;

/** Object names in the blob store. */
export const blobKeys = {
  source: (repo: string, commit: string) => `source/${repo}/${commit}.tar.gz`,
  logChunk: (taskId: string, index: number) => `tasks/${taskId}/log/${String(index).padStart(4, '0')}`,
  logPrefix: (taskId: string) => `tasks/${taskId}/log/`,
  result: (taskId: string) => `tasks/${taskId}/result.json`,
} as const;

/** The task ID of a result object's key, or undefined for any other key. */
export function taskIdOfResultKey(key: string): string | undefined {
  return /^tasks\/([0-9a-f]{24})\/result\.json$/.exec(key)?.[1];
}
