import type Docker from 'dockerode';
import { describeError } from '../../core/errors.ts';

/** Why no Docker engine answers `docker` within `timeoutMs`, or undefined when one does. Never throws. */
export async function engineProblem(docker: Docker, timeoutMs: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${timeoutMs / 1000} s`), timeoutMs);
  });
  try {
    return await Promise.race([docker.ping().then(() => undefined), timeout]);
  } catch (error) {
    return describeError(error);
  } finally {
    clearTimeout(timer);
  }
}
