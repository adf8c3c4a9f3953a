import type { Build } from './types.ts';

/** Where a build is on the dashboard, and the log that tells its story so far. */
export interface BuildLinks {
  buildUrl: string;
  /** A whole build's current attempt; a sharded build's merged log once merged, else its make task's. */
  logUrl: string | undefined;
}

/** The dashboard links of a build, under `baseUrl`. */
export function buildLinks(build: Build, baseUrl: string): BuildLinks {
  const buildUrl = `${baseUrl}/build/${build.id}`;
  const sharding = build.sharding;
  if (sharding === undefined) return { buildUrl, logUrl: build.taskId === undefined ? undefined : `${baseUrl}/log/${build.taskId}` };
  if (sharding.summary !== undefined) return { buildUrl, logUrl: `${buildUrl}/log` };
  return { buildUrl, logUrl: sharding.makeTaskId === undefined ? undefined : `${baseUrl}/log/${sharding.makeTaskId}` };
}
