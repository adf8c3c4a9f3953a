import type { Catalog } from '../shared/core/pipeline/deps.ts';
import { silentLogger, type Logger } from '../shared/ports/log.ts';
import { startLocalRuntime } from '../shared/runtimes/local/local-runtime.ts';

/** The embedded runtime a bench drives by hand: no poll timer, any free port, image builds' progress on stderr. */
export function startBenchRuntime(dataDir: string, catalog: Catalog, logger: Logger = silentLogger) {
  return startLocalRuntime({ dataDir, catalog, logger, pollIntervalMs: 0, port: 0, onProgress: (line) => process.stderr.write(`images: ${line}\n`) });
}
