import { z } from 'zod';

/**
 * What crosses to and from a worker. The spec is all a worker is given: its steps and signed URLs scoped to its
 * own task's objects. The result is all it gives back, and is validated before anything trusts it.
 */

/** A path inside the task's tree: relative, `/`-separated, no `.` or `..` segment. */
const relativePath = z
  .string()
  .regex(/^[A-Za-z0-9._+-]+(\/[A-Za-z0-9._+-]+)*$/, 'expected a relative path')
  .refine((path) => path.split('/').every((segment) => segment !== '.' && segment !== '..'), 'expected no . or .. in the path');

const step = z.strictObject({
  name: z.string().min(1).max(200),
  argv: z.array(z.string()).min(1),
  /** Where the step runs, relative to the source root. */
  dir: relativePath.optional(),
  /** Variables for this step only, over the task's. */
  env: z.record(z.string(), z.string()).optional(),
  /** Its stdout becomes the result's `output` (up to `outputBytes`), not part of the log. */
  capture: z.boolean().optional(),
  /** It fetches Go modules: when it fails for want of the proxy, that is the machine's failure. */
  fetchesModules: z.boolean().optional(),
  /**
   * It runs these units' package tests in one `go test` (a batched `dist test`): the result has one step per unit,
   * named after it, ended by its package's result line in the output, instead of one for the whole step.
   */
  units: z
    .array(z.strictObject({ name: z.string().min(1).max(200), package: z.string().regex(/^[A-Za-z0-9_.+/-]{1,200}$/, 'expected a package path') }))
    .min(2)
    .refine((units) => new Set(units.map((unit) => unit.package)).size === units.length, 'expected each package once')
    .optional(),
});

export const TaskSpec = z.strictObject({
  v: z.literal(1),
  taskId: z.string().regex(/^[0-9a-f]{24}$/),
  builder: z.string(),
  attempt: z.number().int().min(1),
  steps: z.array(step).min(1),
  env: z.record(z.string(), z.string()),
  /** ms since the epoch; the agent stops its steps a little before, to upload what it has. */
  deadline: z.number().int(),
  /**
   * `tree` (default): a source tarball, unpacked into `src/`. `snapshot`: a built tree from a make task, holding
   * `src/` and `home/`, unpacked into the work directory.
   */
  source: z.strictObject({ url: z.url(), layout: z.enum(['tree', 'snapshot']).optional() }),
  /**
   * The most the source may unpack to (file bytes, and entries), and the most a snapshot may hold to be uploaded:
   * past either, the unpack stops there, or the snapshot is not uploaded, and the task fails.
   */
  unpack: z.strictObject({ maxBytes: z.number().int().min(1), maxEntries: z.number().int().min(1) }),
  /** Run every step whatever the earlier ones did (a shard's units); otherwise the first failure stops the task. */
  keepGoing: z.boolean().optional(),
  /** The most bytes of captured output kept (default 1 MiB). */
  outputBytes: z.number().int().min(1).max(16 << 20).optional(),
  /** When every step passed: pack `src/` (less `exclude`) and `home/` and PUT the snapshot here. */
  snapshot: z
    .strictObject({ url: z.url(), exclude: z.array(relativePath), maxBytes: z.number().int().min(1) })
    .optional(),
  /**
   * A Go module cache at `gomodcache/` in the work directory, named by GOMODCACHE. With `url`, the blob there is
   * unpacked into it, read-only, before the steps; with `upload`, the steps write it and, when all passed, it is packed
   * and PUT there. With neither, it is what a snapshot brought, or empty, and read-only.
   */
  goModules: z
    .strictObject({
      url: z.url().optional(),
      upload: z.strictObject({ url: z.url(), maxBytes: z.number().int().min(1) }).optional(),
    })
    .optional(),
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
  /**
   * `failed`: a step failed, or the tree was over a size limit (no step failed; `error` says which limit).
   * `error`: the agent could not do its job (source download failed, its disk filled, ...); counts as an infra failure.
   */
  status: z.enum(['passed', 'failed', 'timed-out', 'error']),
  startedAt: z.number().int(),
  finishedAt: z.number().int(),
  steps: z.array(
    z.strictObject({
      name: z.string(),
      exitCode: z.number().int().nullable(),
      signal: z.string().optional(),
      durationMs: z.number().int().min(0),
      /**
       * Where the step's output is in the uploaded log, as byte offsets [start, end). Where a cut log dropped some of
       * it, the range holds the cut's marker line in their place.
       */
      log: z.strictObject({ start: z.number().int().min(0), end: z.number().int().min(0) }).optional(),
      /** For a step that exited 127 (not found): the program that was not there, when the agent could tell which. */
      missing: z.string().max(200).optional(),
      /**
       * What the agent recognised in a failed step's output, and whose it is: the commit's (a go.sum that does not
       * verify) or the environment's (a module proxy that cannot be reached).
       */
      finding: z.strictObject({ blame: z.enum(['commit', 'environment']), text: z.string().max(1000) }).optional(),
      /** For a step that failed with its work directory's file system full: what the agent measured there. */
      diskFull: z
        .strictObject({
          path: z.string().max(4096),
          freeBytes: z.number().int().min(0),
          totalBytes: z.number().int().min(0),
          freeFiles: z.number().int().min(0),
          totalFiles: z.number().int().min(0),
        })
        .optional(),
    }),
  ),
  log: z.strictObject({ bytes: z.number().int().min(0), truncated: z.boolean(), chunks: z.number().int().min(0) }),
  /** The captured stdout of the `capture` steps. */
  output: z.string().optional(),
  outputTruncated: z.boolean().optional(),
  /** How long the source or snapshot, and the module cache if any, took to download and unpack. */
  source: z.strictObject({ seconds: z.number().min(0) }).optional(),
  /** The snapshot this task uploaded. */
  snapshot: z
    .strictObject({
      bytes: z.number().int().min(0),
      files: z.number().int().min(0),
      packSeconds: z.number().min(0),
      uploadSeconds: z.number().min(0),
    })
    .optional(),
  error: z.string().optional(),
});
export type TaskResult = z.infer<typeof TaskResult>;

/** Object names in the blob store. */
export const blobKeys = {
  source: (repo: string, commit: string) => `source/${repo}/${commit}.tar.gz`,
  logChunk: (taskId: string, index: number) => `tasks/${taskId}/log/${String(index).padStart(4, '0')}`,
  logPrefix: (taskId: string) => `tasks/${taskId}/log/`,
  /**
   * Apart from everything else, so that on Google Cloud a bucket notification on this prefix alone wakes `landed`
   * (log chunks, rewritten as they grow, would otherwise wake it hundreds of times a build).
   */
  result: (taskId: string) => `results/${taskId}.json`,
  /** A built tree, keyed by what went into it (see snapshotKey). */
  snapshot: (key: string) => `snapshots/${key}/tree.tar.gz`,
  /** A module cache, keyed by the module files and how they were fetched (see moduleCacheKey). */
  modules: (key: string) => `modules/${key}.tar.gz`,
  /** The units listed from that tree; written after the snapshot landed, so its presence means both are whole. */
  snapshotUnits: (key: string) => `snapshots/${key}/units.json`,
  /** A sharded build's merged log. */
  mergedLog: (buildId: string) => `builds/${buildId}/log.txt`,
} as const;

/** The task ID of a result object's key, or undefined for any other key. */
export function taskIdOfResultKey(key: string): string | undefined {
  return /^results\/([0-9a-f]{24})\.json$/.exec(key)?.[1];
}
