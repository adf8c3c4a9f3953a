import type { Fields, Logger } from '../../ports/log.ts';

type Severity = 'INFO' | 'WARNING' | 'ERROR';

/**
 * Structured logs for Cloud Logging: one JSON object a line on stdout, whose `severity` and `message` fields Cloud
 * Functions and App Engine turn into the entry's severity and summary; the fields stay searchable as jsonPayload.
 */
export function createCloudLogger(options: { write?: (line: string) => void; labels?: Record<string, string> } = {}): Logger {
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  const emit = (severity: Severity, event: string, fields: Fields = {}) => {
    const entry: Record<string, unknown> = { severity, message: event, ...fields };
    if (options.labels !== undefined) entry['logging.googleapis.com/labels'] = options.labels;
    write(`${JSON.stringify(entry)}\n`);
  };
  return {
    info: (event, fields) => emit('INFO', event, fields),
    warn: (event, fields) => emit('WARNING', event, fields),
    error: (event, fields) => emit('ERROR', event, fields),
  };
}
