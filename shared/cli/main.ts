import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, describeError } from '../core/errors.ts';
import { projectDir } from './catalog.ts';
import { exitCodes, UsageError, type Io } from './io.ts';
import { deploy, deployHelp, teardown, teardownHelp } from './deploy.ts';
import { goTree, goTreeHelp } from './go-tree.ts';
import { images, imagesHelp } from './images.ts';
import { tryCommand, tryHelp } from './try.ts';
import { up, upHelp } from './up.ts';

const help = `Usage: hermetic <command> [options]

A hermetic build-and-trybot system: every commit built and tested in a throwaway worker, verdicts on a dashboard.

Commands:
  up          run the whole pipeline on this machine (see: hermetic up --help)
  try         ask for a trybot run of a change before it lands (see: hermetic try --help)
  images      build and list the builder images (see: hermetic images --help)
  go-tree     make a git repository of Debian's Go source tree, to build and test (see: hermetic go-tree --help)
  deploy      deploy to a Google Cloud project with gcloud (see: hermetic deploy --help)
  teardown    remove everything deploy made from the project (see: hermetic teardown --help)
  help        show this help

Options:
  -h, --help     show help
  --version      print the version`;

/** Runs one command line; returns the exit status. Never throws. */
export async function main(argv: string[], io: Io): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '-h':
      case '--help':
        io.stdout(help);
        return command === undefined ? exitCodes.usage : exitCodes.ok;
      case '--version':
        io.stdout(version());
        return exitCodes.ok;
      case 'up':
        return await up(rest, io);
      case 'try':
        return await tryCommand(rest, io);
      case 'images':
        return await images(rest, io);
      case 'go-tree':
        return await goTree(rest, io);
      case 'deploy':
        return await deploy(rest, io);
      case 'teardown':
        return await teardown(rest, io);
      default:
        throw new UsageError(`unknown command "${command}"; expected one of: up, try, images, go-tree, deploy, teardown, help`);
    }
  } catch (error) {
    const usage = error instanceof UsageError || error instanceof ConfigError || isParseArgsError(error);
    io.stderr(`hermetic: ${describeError(error)}`);
    const commandHelp = ({ up: upHelp, try: tryHelp, images: imagesHelp, 'go-tree': goTreeHelp, deploy: deployHelp, teardown: teardownHelp } as Record<string, string>)[command ?? ''];
    if (usage && commandHelp !== undefined && !(error instanceof ConfigError)) io.stderr(`\n${commandHelp}`);
    return usage ? exitCodes.usage : exitCodes.failure;
  }
}

function isParseArgsError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');
}

function version(): string {
  const pkg = JSON.parse(readFileSync(join(projectDir, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

/** Runs the CLI as a process: real stdio, Ctrl-C and SIGTERM as a clean stop, a second Ctrl-C as an immediate one. */
export async function runProcess(): Promise<void> {
  let stop = () => {};
  const interrupted = new Promise<void>((resolve) => {
    stop = resolve;
  });
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`hermetic: ${signal} again; exiting now\n`);
      process.exit(exitCodes.interrupted);
    }
    process.stderr.write(`\nhermetic: ${signal}; stopping (press Ctrl-C again to force)\n`);
    stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const code = await main(process.argv.slice(2), {
    cwd: process.cwd(),
    stdout: (text) => process.stdout.write(`${text}\n`),
    stderr: (text) => process.stderr.write(`${text}\n`),
    interrupted,
  });
  process.exitCode = code;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}
