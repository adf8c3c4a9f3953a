#!/usr/bin/env node
// Checked before any TypeScript loads, so an old Node says what is wrong instead of failing on syntax.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `hermetic needs Node.js 22.18 or newer; this is ${process.version}.\n` +
      'Run it through npm (npm start, npm run hermetic -- ...), which uses the Node the project installs.\n',
  );
  process.exit(2);
}
// node:sqlite is stable in use but still flagged experimental on Node 22; its one-time warning would only
// clutter stderr, which belongs to progress and errors. Every other warning still prints.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) => {
  const type = typeof rest[0] === 'string' ? rest[0] : rest[0]?.type;
  if (type === 'ExperimentalWarning' && String(warning).startsWith('SQLite')) return;
  emitWarning.call(process, warning, ...rest);
};
const { runProcess } = await import('../shared/cli/main.ts');
await runProcess();
