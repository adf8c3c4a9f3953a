// The import boundaries of ARCHITECTURE.md, checked by `npm run lint` (depcruise). Imports run one way, inward:
// functions/ -> shared/runtimes/ -> shared/adapters/ -> shared/ports/ <- shared/core/.

/**
 * The SDKs and platform clients that only adapters may hold. A rule's `path` matches the resolved file, so a package
 * is matched by its folder under node_modules (or by its bare name, should it not resolve); Node's prefix-only
 * built-in `node:sqlite` keeps its prefix.
 */
const sdkPackages = '(@google-cloud/[^/]+|octokit|@octokit/[^/]+|dockerode|docker-modem)';
const sdks = [`(^|/)node_modules/${sdkPackages}/`, `^${sdkPackages}(/|$)`, '^(node:)?sqlite$'];

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'core-knows-no-platform',
      comment:
        'shared/core/ is the logic both runtimes share: it sees the world only through shared/ports/, so it imports no ' +
        'adapter, runtime, program (cli, images, agent), entry point (functions/) or deployment data (infra/).',
      severity: 'error',
      from: { path: '^shared/core/' },
      to: { path: '^(shared/(adapters|runtimes|cli|images|agent)|functions|infra)/' },
    },
    {
      name: 'core-reaches-no-sdk',
      comment:
        'An SDK in shared/core/ would tie the logic to one platform and load its client on every cold start: SDKs ' +
        '(Google Cloud, GitHub, Docker, SQLite) belong to shared/adapters/. Reachable, not only imported: a helper ' +
        'outside the core that holds an SDK (shared/file-lock.ts holds node:sqlite) is no way around it.',
      severity: 'error',
      from: { path: '^shared/core/' },
      to: { path: sdks, reachable: true },
    },
    {
      name: 'core-packages-are-small-and-pure',
      comment:
        'Besides the SDKs above, shared/core/ takes only small pure libraries from npm, so that a new platform ' +
        'client cannot slip in under a name the SDK list lacks. Adding one here is a decision: say why in the commit.',
      severity: 'error',
      from: { path: '^shared/core/' },
      to: {
        dependencyTypes: ['npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown'],
        pathNot: '(^|/)node_modules/(zod|tar)/',
      },
    },
    {
      name: 'ports-are-interfaces',
      comment:
        'A port is an interface over the model: it names the model\'s types, other ports, Node\'s built-in types and ' +
        'the error kinds (shared/core/errors.ts, so a port can say which of its failures are retryable), and ' +
        'nothing else, so every adapter and fake implements it without pulling in logic or a platform.',
      severity: 'error',
      from: { path: '^shared/ports/' },
      to: {
        pathNot: ['^shared/ports/', '^shared/core/model/', '^shared/core/errors\\.ts$'],
        dependencyTypesNot: ['core'],
      },
    },
    {
      name: 'ports-name-only-model-types',
      comment:
        'Ports import the model for its types alone (`import type`): an interface needs no value from the model, and ' +
        'a value import would make loading a port load the model\'s schemas.',
      severity: 'error',
      from: { path: '^shared/ports/' },
      to: { path: '^shared/core/model/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'shared-imports-no-entry-point-or-data',
      comment:
        'functions/ wraps shared/ for Cloud Functions and infra/ holds data and recipes; code under shared/ reads ' +
        'infra/ files with fs at run time, never imports them, so neither can become a dependency of the code.',
      severity: 'error',
      from: { path: '^shared/' },
      to: { path: '^(functions|infra)/' },
    },
    {
      name: 'adapters-below-runtimes',
      comment:
        'An adapter implements a port for one platform; the runtimes compose adapters and the CLI drives runtimes, ' +
        'so an adapter importing either (or an entry point) would make the arrows point back up.',
      severity: 'error',
      from: { path: '^shared/adapters/' },
      to: { path: '^(shared/(runtimes|cli)|functions)/' },
    },
    {
      name: 'core-has-no-cycles',
      comment:
        'A cycle among core modules means neither can be understood, tested or moved without the other.',
      severity: 'error',
      from: { path: '^shared/core/' },
      to: { path: '^shared/core/', circular: true },
    },
  ],
  options: {
    // Type-only imports count: a core module naming an adapter's type depends on it as much as one calling it.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
  },
};
