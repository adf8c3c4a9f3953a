/**
 * Branch and ref names as this project accepts them: a strict subset of git's rules with no shell or option
 * meaning anywhere. Names never reach a shell, but rejecting odd ones at the edge keeps logs and URLs plain too.
 */
export function isSafeBranchName(name: string): boolean {
  return (
    name.length > 0 &&
    name.length <= 200 &&
    /^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(name) &&
    !name.includes('..') &&
    !name.includes('//') &&
    !name.endsWith('/') &&
    !name.endsWith('.') &&
    !name.endsWith('.lock')
  );
}

/** A repo, builder or host-type name: lower-case letters, digits, ".", "_" and "-", at most 63 characters. */
export function isName(value: string): boolean {
  return /^[a-z0-9][a-z0-9._-]{0,62}$/.test(value);
}

/** A GitHub App's numeric ID. */
export function isGitHubAppId(value: string): boolean {
  return /^[0-9]{1,12}$/.test(value);
}

/** A full commit hash (SHA-1 or SHA-256), lower-case hex. */
export function isCommitHash(value: string): boolean {
  return /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(value);
}

/**
 * A GitHub login as GitHub allows it: ASCII letters, digits and single hyphens inside, at most 39 characters. Names
 * built to look like a trusted one (Cyrillic letters, trailing hyphens, spaces) fail here, before any trust check.
 */
export function isGitHubLogin(value: string): boolean {
  return /^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/.test(value);
}

/** A test unit's name as builders list them (`go_test:net/http`, `test:0_1`, `example.com/m/pkg`), never an option. */
export function isTestName(value: string): boolean {
  return value.length <= 300 && /^[A-Za-z0-9_][A-Za-z0-9._/:+-]*$/.test(value);
}
