import type { TaskResult } from '../core/model/wire.ts';

type Finding = NonNullable<TaskResult['steps'][number]['finding']>;

/** How go says a download did not match go.sum, or that go.sum lacks an entry: the commit's go.sum is wrong. */
const commitPatterns: Array<[RegExp, (match: RegExpMatchArray) => string]> = [
  [/verifying (\S+): checksum mismatch/, (match) => `go.sum does not match what the module proxy serves for ${match[1]} (checksum mismatch)`],
  [/missing go\.sum entry for ([^;\n]+)/, (match) => `go.sum has no entry for ${match[1]?.trim()}`],
];

/** How go says it could not reach a module proxy: the network's failure, not the commit's. */
const unreachablePattern = /^.*(?:dial tcp|no such host|connection refused|connection reset|i\/o timeout|TLS handshake timeout|network is unreachable|: 50[0-9] [A-Z][^\n]*$).*$/m;

/**
 * What a failed step's last output says about Go modules, if anything: a go.sum that does not verify (the commit's),
 * or, for the step that fetches modules, a proxy out of reach (the environment's).
 */
export function goModuleFinding(output: string, fetchesModules: boolean): Finding | undefined {
  for (const [pattern, describe] of commitPatterns) {
    const match = pattern.exec(output);
    if (match !== null) return { blame: 'commit', text: describe(match).slice(0, 1000) };
  }
  if (!fetchesModules) return undefined;
  const line = unreachablePattern.exec(output)?.[0].trim();
  return line === undefined ? undefined : { blame: 'environment', text: `the module proxy could not be reached: ${line}`.slice(0, 1000) };
}
