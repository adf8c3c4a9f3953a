import { isName, isTestName } from '../model/refs.ts';
import type { TryMode } from '../model/types.ts';

/** What a `/try` comment asks for: builders by name (else the repo's defaults) and a mode (else everything). */
export interface TryCommand {
  builders?: string[];
  mode?: TryMode;
}

/**
 * Reads the `/try` command in a pull request comment: the first line that starts with `/try`, then words:
 * `make` (make only), `tests=a,b` (only those test units), and builder names (space- or comma-separated).
 * Returns undefined when the comment has no command, or `{ error }` naming the word that is not understood.
 */
export function parseTryComment(body: string): TryCommand | { error: string } | undefined {
  const line = body.split(/\r?\n/).find((text) => /^\/try(\s|$)/.test(text.trim()));
  if (line === undefined) return undefined;
  const words = line.trim().split(/\s+/).slice(1);
  const builders: string[] = [];
  let mode: TryMode | undefined;
  for (const word of words) {
    if (word === 'make') {
      mode = { kind: 'make' };
    } else if (word.startsWith('tests=')) {
      const tests = word.slice('tests='.length).split(',').filter((name) => name !== '');
      const bad = tests.find((name) => !isTestName(name));
      if (tests.length === 0 || bad !== undefined) return { error: `"${word.slice(0, 80)}": expected tests=NAME[,NAME...] of test unit names` };
      mode = { kind: 'tests', tests };
    } else {
      for (const name of word.split(',').filter((part) => part !== '')) {
        if (!isName(name)) return { error: `"${name.slice(0, 80)}": expected a builder name, "make" or "tests=NAMES"` };
        builders.push(name);
      }
    }
  }
  return { ...(builders.length === 0 ? {} : { builders }), ...(mode === undefined ? {} : { mode }) };
}
