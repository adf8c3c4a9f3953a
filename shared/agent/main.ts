import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { TaskSpec } from '../core/model/wire.ts';
import { runAgent } from './agent.ts';
import { describeError } from '../core/errors.ts';

/** The user steps run as under --isolate-steps: the images' `builder`. */
const stepUser = 1000;

// The worker agent program. Exit codes: 0 the result was uploaded, 1 it could not be, 2 bad usage or a bad spec.

const usage = `usage: node shared/agent/main.ts --workdir DIR [--spec FILE] [--isolate-steps [--step-network]]

Runs one hermetic task: reads its TaskSpec (JSON) from FILE, or from stdin without --spec, fetches the source into
DIR/src (or a snapshot's src/ and home/ into DIR), runs the steps, streams the log, uploads a snapshot if asked and
the result, all through the spec's signed URLs.

  --isolate-steps  run each step as uid/gid ${stepUser} with no capabilities, in its own PID namespace and with no
                   network but loopback; the agent must run as root (in a container) for this
  --step-network   with --isolate-steps: let steps keep the network

exit status: 0 result uploaded, 1 result could not be uploaded, 2 bad usage or bad spec
`;

async function main(): Promise<number> {
  let values: {
    workdir?: string | undefined;
    spec?: string | undefined;
    'isolate-steps'?: boolean | undefined;
    'step-network'?: boolean | undefined;
    help?: boolean | undefined;
  };
  try {
    ({ values } = parseArgs({
      options: {
        workdir: { type: 'string' },
        spec: { type: 'string' },
        'isolate-steps': { type: 'boolean' },
        'step-network': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    process.stderr.write(`hermetic-agent: ${describeError(error)}\n${usage}`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(usage);
    return 0;
  }
  if (values.workdir === undefined || values.workdir === '') {
    process.stderr.write(`hermetic-agent: --workdir is required\n${usage}`);
    return 2;
  }

  if (values['step-network'] === true && values['isolate-steps'] !== true) {
    process.stderr.write(`hermetic-agent: --step-network needs --isolate-steps\n${usage}`);
    return 2;
  }

  let text: string;
  try {
    text = values.spec === undefined ? await readStdin() : await readFile(values.spec, 'utf8');
  } catch (error) {
    process.stderr.write(`hermetic-agent: cannot read the task spec: ${describeError(error)}\n`);
    return 2;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    process.stderr.write(`hermetic-agent: bad task spec: not JSON (${describeError(error)})\n`);
    return 2;
  }
  const parsed = TaskSpec.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
      .join('; ');
    process.stderr.write(`hermetic-agent: bad task spec: ${issues}\n`);
    return 2;
  }

  const baseEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) baseEnv[key] = value;
  try {
    const isolateSteps =
      values['isolate-steps'] === true
        ? { uid: stepUser, gid: stepUser, network: values['step-network'] === true }
        : undefined;
    const result = await runAgent({
      spec: parsed.data,
      workDir: values.workdir,
      baseEnv,
      ...(isolateSteps === undefined ? {} : { isolateSteps }),
    });
    process.stderr.write(
      `hermetic-agent: task ${result.taskId} ${result.status}; result uploaded` +
        `${result.error === undefined ? '' : ` (${result.error})`}\n`,
    );
    return 0;
  } catch (error) {
    process.stderr.write(`hermetic-agent: ${describeError(error)}\n`);
    return 1;
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

// Exit at once: a step's escaped process must not keep the agent, and so the worker, alive.
process.exit(await main());
