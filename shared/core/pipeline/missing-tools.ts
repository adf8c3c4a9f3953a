/**
 * A program a worker could not find is the machine's fault, never the commit's: the build is an infra failure whose
 * reason names the program and how to get it. Debian is where every environment here comes from (the host of the
 * process sandbox, the images under infra/env/), so the way to get a program is the Debian package that has it.
 */

/** The Debian package of each program builders commonly need; a program not listed is named without a package. */
const debianPackages: Readonly<Record<string, string>> = {
  go: 'golang-go',
  gofmt: 'golang-go',
  git: 'git',
  bash: 'bash',
  sh: 'dash',
  make: 'make',
  gcc: 'gcc',
  cc: 'gcc',
  'g++': 'g++',
  ld: 'binutils',
  perl: 'perl',
  python3: 'python3',
  curl: 'curl',
  tar: 'tar',
  gzip: 'gzip',
  xz: 'xz-utils',
  unzip: 'unzip',
  patch: 'patch',
  diff: 'diffutils',
  ip: 'iproute2',
  unshare: 'util-linux',
  setpriv: 'util-linux',
};

/** The Debian package that has `program` (a name, or a path: /usr/lib/go/bin/go is go), when this table knows it. */
export function debianPackageOf(program: string): string | undefined {
  const name = program.slice(program.lastIndexOf('/') + 1);
  return Object.hasOwn(debianPackages, name) ? debianPackages[name] : undefined;
}

/**
 * Why a worker of `hostType` lacked `programs` (empty: a program the log names), and how to get them: on `host`, the
 * process sandbox's own machine, `apt-get install` the packages; on any other host type, add them to its image's
 * recipe.
 */
export function missingToolsReason(programs: readonly string[], hostType: string): string {
  if (programs.length === 0) return `a program it runs is not installed on the ${hostType} worker (the log names it)`;
  const named = programs.join(', ');
  const packages = [...new Set(programs.map((program) => debianPackageOf(program)).filter((name) => name !== undefined))];
  const unknown = programs.filter((program) => debianPackageOf(program) === undefined);
  const what = programs.length === 1 ? 'is' : 'are';
  if (hostType === 'host') {
    const install = packages.length > 0 ? `apt-get install ${packages.join(' ')}` : '';
    const other = unknown.length > 0 ? `install ${unknown.join(', ')}` : '';
    return `${named} ${what} not installed on this machine, whose own tools the process sandbox (host type host) runs: ${[install, other].filter(Boolean).join('; ')}`;
  }
  const add = [...packages, ...unknown.map((program) => `the package that has ${program}`)].join(', ');
  return `${named} ${what} not in the ${hostType} worker image: add ${add} to infra/env/${hostType}/ and rebuild it (hermetic images build ${hostType})`;
}
