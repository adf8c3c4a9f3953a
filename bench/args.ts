import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

/**
 * A bench script's options, parsed strictly with `--help` added: `--help` prints `usage` and exits 0; an unknown
 * option, a missing value or a stray argument prints the problem and `usage` to stderr and exits 2.
 */
export function benchArgs<const O extends ParseArgsOptionsConfig>(usage: string, options: O): ReturnType<typeof parseArgs<{ options: O; strict: true }>>['values'] {
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ options: { ...options, help: { type: 'boolean' } }, strict: true, allowPositionals: false }));
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n${usage}\n`);
    process.exit(2);
  }
  if (values['help'] === true) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  return values as ReturnType<typeof parseArgs<{ options: O; strict: true }>>['values'];
}
