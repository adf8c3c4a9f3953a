import type { Fields, Logger } from '../ports/log.ts';
import type { Reporter } from '../ports/reporter.ts';

type Write = (line: string) => void;

/**
 * A logger for people at a terminal: the pipeline's progress as short lines, warnings and errors always, other
 * events only when verbose. Everything goes to `write` (stderr), never stdout, which belongs to --json output.
 */
export function createConsoleLogger(options: { write: Write; verbose: boolean }): Logger {
  const { write } = options;
  return {
    info(event, fields = {}) {
      const line = progressLine(event, fields);
      if (line !== undefined) write(line);
      else if (options.verbose) write(`${event}${formatFields(fields)}`);
    },
    warn(event, fields = {}) {
      write(
        event === 'task.retry'
          ? retryLine(fields)
          : event === 'tests.retry'
            ? `↻ re-running    ${fields['repo']} ${String(fields['commit']).slice(0, 12)} ${fields['builder']}: ${fields['units']} failed unit(s) on ${fields['tasks']} fresh worker(s)`
            : `warning: ${event}${formatFields(fields)}`,
      );
    },
    error(event, fields = {}) {
      write(`error: ${event}${formatFields(fields)}`);
    },
  };
}

/** How many verdicts the console remembers printing; past that it forgets the oldest. */
export const REMEMBERED_VERDICTS = 10_000;

/**
 * Prints each verdict once, with the link to its log. A verdict is reported again when its message is redelivered
 * (another reporter failed) or when it lands during a progress update; those repeats print nothing.
 */
export function createConsoleReporter(write: Write): Reporter {
  const marks: Record<string, string> = { passed: '✓', failed: '✗', flaky: '~', 'infra-failure': '!' };
  const printed = new Set<string>();
  return {
    name: 'console',
    async report(build, links) {
      const key = `${build.id} ${build.status}`;
      if (printed.has(key)) return;
      printed.add(key);
      if (printed.size > REMEMBERED_VERDICTS) printed.delete(printed.values().next().value ?? key);
      const reason = build.reason === undefined ? '' : ` (${build.reason})`;
      write(
        `${marks[build.status] ?? '?'} ${build.status.padEnd(13)} ${build.repo} ${build.commit.slice(0, 12)} ${build.builder}${reason}  ${links.logUrl ?? links.buildUrl}`,
      );
    },
  };
}

function progressLine(event: string, fields: Fields): string | undefined {
  switch (event) {
    case 'compute.containers':
      return `hermetic: containers for ${fields['hostTypes']} (workers reach this host at ${fields['gateway']})`;
    case 'poll.found':
      return `found ${fields['commits']} new commit(s) on ${fields['repo']}/${fields['branch']}`;
    case 'task.launched':
      return `▶ started       ${fields['repo']} ${String(fields['commit']).slice(0, 12)} ${fields['builder']}${fields['step'] === 'build' ? '' : ` ${fields['step']}`} on ${fields['hostType']}${Number(fields['attempt']) > 1 ? ` (attempt ${fields['attempt']})` : ''}`;
    case 'tests.planned':
      return `◆ planned       ${fields['repo']} ${String(fields['commit']).slice(0, 12)} ${fields['builder']}: ${fields['units']} unit(s) in ${fields['shards']} shard(s), about ${fields['makespan']}s each (snapshot ${fields['snapshot']})`;
    default:
      return undefined;
  }
}

function retryLine(fields: Fields): string {
  return `↻ retrying      ${fields['repo']} ${String(fields['commit']).slice(0, 12)} ${fields['builder']}: ${fields['reason']} (attempt ${fields['attempt']} next)`;
}

function formatFields(fields: Fields): string {
  return Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => ` ${key}=${typeof value === 'string' && /\s/.test(value) ? JSON.stringify(value) : String(value)}`)
    .join('');
}
