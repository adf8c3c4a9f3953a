// `go test -run` patterns that select an exact set of top-level tests.
//
// Go 1.19's `-run` is not one regexp: testing/match.go first splits it on `/` and `|` that stand outside brackets
// and parentheses (one regexp per subtest level, and alternatives of such lists), skipping the character after a
// backslash. So the alternation is wrapped in one group, and every metacharacter, `/` included, is escaped: the
// pattern then has a single level and its only `|` sit inside the group. With no second level every subtest of a
// selected test runs, which is what a partition of a package's tests wants.

// regexp.QuoteMeta's set, plus `/` (the level separator above). Escaping `/` is legal both in RE2 and in
// JavaScript's `u` mode, which the tests use to check the patterns.
const metacharacters = /[\\.+*?()|[\]{}^$/]/g;

/** A literal for Go's regexp (RE2) that matches exactly `name`: every metacharacter and `/` backslash-escaped. */
export function quoteGoRegexp(name: string): string {
  return name.replace(metacharacters, (char) => `\\${char}`);
}

/**
 * The `-run` pattern that selects exactly the named top-level tests, and no other: `^(A|B|C)$`, names escaped.
 * Throws RangeError for an empty list, which would select nothing and so cannot stand for a part of a package.
 */
export function runPattern(tests: readonly string[]): string {
  if (tests.length === 0) throw new RangeError('a -run pattern needs at least one test name');
  return `^(${tests.map(quoteGoRegexp).join('|')})$`;
}
