import { createHash } from 'node:crypto';

/** Deterministic ID of the build of one commit of one repo on one builder: the same inputs, the same ID. */
export function buildId(repo: string, commit: string, builder: string): string {
  return digest(['build', repo, commit, builder]);
}

/** Deterministic ID of a trybot build: apart from the post-submit build of the same commit, and per mode. */
export function tryBuildId(repo: string, commit: string, builder: string, mode: string): string {
  return digest(['try-build', repo, commit, builder, mode]);
}

/** Deterministic ID of a trybot request: one per commit, mode and named builders, however often it is asked. */
export function tryId(repo: string, commit: string, mode: string, builders: readonly string[] | undefined): string {
  return digest(['try', repo, commit, mode, builders === undefined ? '' : [...builders].sort().join(',')]);
}

/** Deterministic ID of the verdict a builder, as configured (`recipe`), gave a tree in a mode. */
export function verdictDocId(tree: string, builder: string, mode: string, recipe: unknown): string {
  return digest(['verdict', tree, builder, mode, JSON.stringify(recipe)]);
}

/** Deterministic ID of what the trust check knows of a GitHub login (logins are case-insensitive). */
export function trustDocId(login: string): string {
  return digest(['trust', login.toLowerCase()]);
}

/** Deterministic ID of an untrusted requester's waiting requests. */
export function waitingDocId(login: string): string {
  return digest(['waiting', login.toLowerCase()]);
}

/**
 * A deployment's ID: part of its workers' names and labels, so deployments sharing a Docker engine or a Google Cloud
 * project never adopt, stop or trip over each other's workers. Lower-case letters and digits, which both Docker and
 * Compute Engine names allow.
 */
export const deploymentIdPattern = /^[a-z0-9]{4,12}$/;

/** A Google Cloud deployment's ID: from its bucket, whose name is unique worldwide and fixed for its life. */
export function deploymentIdOfBucket(bucket: string): string {
  return digest(['deployment', bucket]).slice(0, 8);
}

/** Deterministic ID of one attempt of one step of a build. */
export function taskId(build: string, step: string, attempt: number): string {
  return digest(['task', build, step, String(attempt)]);
}

/** Deterministic ID of a commit document. */
export function commitDocId(repo: string, commit: string): string {
  return digest(['commit', repo, commit]);
}

/** Deterministic ID of a watched branch's poll state. */
export function branchDocId(repo: string, branch: string): string {
  return digest(['branch', repo, branch]);
}

/**
 * Deterministic key of a built tree's snapshot: the same source tree built the same way (host type, steps,
 * environment, what is left out) gives the same key, whichever commit, repo or builder asked for it.
 */
export function snapshotKey(tree: string, recipe: unknown): string {
  return digest(['snapshot', tree, JSON.stringify(recipe)]);
}

/**
 * Deterministic key of a module cache: the module files (paths and contents) and how they are fetched (proxy,
 * checksum database, host type, packages, environment).
 */
export function moduleCacheKey(files: ReadonlyArray<{ path: string; text: string }>, recipe: unknown): string {
  return digest(['modules', JSON.stringify(files), JSON.stringify(recipe)]);
}

/** Deterministic ID of a builder's learned duration for one test unit. */
export function durationDocId(builder: string, unit: string): string {
  return digest(['duration', builder, unit]);
}

/** Deterministic ID of a remembered conditional-request response (the key names the request). */
export function etagDocId(key: string): string {
  return digest(['etag', key]);
}

// Hash-shaped IDs: safe in URLs, file names and Firestore document names, and spread evenly (no hot key range).
function digest(parts: string[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 24);
}
