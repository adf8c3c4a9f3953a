import type { Build } from '../core/model/types.ts';
import type { BuildLinks } from '../core/model/links.ts';

/** Where a verdict goes once a build is done: the console, GitHub statuses. */
export interface Reporter {
  readonly name: string;
  /** Delivers one build's verdict. May be called again for the same build after a crash, so it must be idempotent. */
  report(build: Build, links: BuildLinks): Promise<void>;
  /** Shows a build that is queued or running, for reporters that show it on the way. Idempotent too. */
  progress?(build: Build, links: BuildLinks): Promise<void>;
}
