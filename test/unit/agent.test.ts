import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runAgent, displayCommand, finishingGraceMs, programNotFoundIn } from '../../shared/agent/agent.ts';
import { blobKeys, TaskResult, type TaskSpec } from '../../shared/core/model/wire.ts';
import { startFakeBlobServer, taskSpecFor, tarball, type FakeBlobServer, type TestSpecOptions } from '../helpers/fake-blob-server.ts';
import { processesWithArgument } from '../helpers/proc-scan.ts';

const agentMain = fileURLToPath(new URL('../../shared/agent/main.ts', import.meta.url));
const baseEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' };

let server: FakeBlobServer;
let root: string;

before(async () => {
  server = await startFakeBlobServer();
  root = await mkdtemp(join(tmpdir(), 'hermetic-agent-test-'));
});
after(async () => {
  await server.close();
  await rm(root, { recursive: true, force: true });
});

function newTaskId(): string {
  return randomBytes(12).toString('hex');
}

/** A spec for a fresh task whose URLs point at the fake server; `deadlineInMs` counts from now. */
function makeSpec(options: Omit<TestSpecOptions, 'deadline'> & { deadlineInMs?: number }): TaskSpec {
  const { deadlineInMs = 60_000, ...rest } = options;
  return taskSpecFor(server, newTaskId(), { ...rest, deadline: Date.now() + deadlineInMs });
}

async function workDir(): Promise<string> {
  return mkdtemp(join(root, 'work-'));
}

/** The log as uploaded: every chunk's last PUT, in order. */
function uploadedLog(spec: TaskSpec): string {
  const parts: Buffer[] = [];
  for (let index = 0; index < spec.log.chunkUrls.length; index++) {
    const body = server.objects.get(blobKeys.logChunk(spec.taskId, index));
    if (body === undefined) break;
    parts.push(body);
  }
  return Buffer.concat(parts).toString('utf8');
}

function uploadedResult(spec: TaskSpec): TaskResult {
  const body = server.objects.get(blobKeys.result(spec.taskId));
  assert.ok(body, 'a result was uploaded');
  return TaskResult.parse(JSON.parse(body.toString('utf8')));
}

async function run(spec: TaskSpec, extra: { graceMs?: number; flushIntervalMs?: number; workDir?: string } = {}) {
  const result = await runAgent({ spec, workDir: await workDir(), baseEnv, ...extra });
  assert.deepEqual(uploadedResult(spec), result, 'the returned result is the uploaded one');
  return { result, log: uploadedLog(spec) };
}

type Step = TaskSpec['steps'][number];

/** `spec` with `extras[i]` (dir, env, capture) laid over its step i. */
function withSteps(spec: TaskSpec, extras: readonly Partial<Step>[]): TaskSpec {
  return { ...spec, steps: spec.steps.map((step, index) => ({ ...step, ...extras[index] })) };
}

/** The bytes of the uploaded log in a step's range, as text. */
function stepLog(spec: TaskSpec, step: Step | TaskResult['steps'][number] | undefined): string {
  const range = step !== undefined && 'log' in step ? step.log : undefined;
  assert.ok(range, 'the step has a log range');
  return Buffer.from(uploadedLog(spec)).subarray(range.start, range.end).toString('utf8');
}

describe('runAgent', () => {
  test('runs passing steps in the unpacked source and reports them', async () => {
    const spec = makeSpec({
      steps: [['cat', 'hello.txt'], ['sh', '-c', 'echo second step']],
      source: [{ path: 'hello.txt', body: 'hello from the source\n' }],
    });
    const { result, log } = await run(spec);
    assert.equal(result.status, 'passed');
    assert.equal(result.taskId, spec.taskId);
    assert.equal(result.error, undefined);
    assert.deepEqual(
      result.steps.map((step) => [step.name, step.exitCode, step.signal]),
      [
        ['step-0', 0, undefined],
        ['step-1', 0, undefined],
      ],
    );
    assert.ok(result.finishedAt >= result.startedAt);
    assert.match(log, /hello from the source\n/);
    assert.match(log, /second step\n/);
    assert.equal(result.log.bytes, Buffer.byteLength(log));
    assert.equal(result.log.truncated, false);
    assert.equal(result.log.chunks, 1);
  });

  test('stops at the first failing step', async () => {
    const spec = makeSpec({ steps: [['echo', 'first'], ['sh', '-c', 'echo failing; exit 3'], ['echo', 'never-run']] });
    const { result, log } = await run(spec);
    assert.equal(result.status, 'failed');
    assert.deepEqual(
      result.steps.map((step) => step.exitCode),
      [0, 3],
    );
    assert.match(log, /failing\n/);
    assert.doesNotMatch(log, /never-run/);
  });

  test('frames each step with a header and a footer, output in order', async () => {
    const script = 'echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three';
    const spec = makeSpec({ steps: [['sh', '-c', script], ['go-nowhere-xyz', 'vet', './...']] });
    const { result, log } = await run(spec);
    const shown = displayCommand(['sh', '-c', script]);
    assert.equal(shown, `sh -c 'echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three'`);
    const seconds = ((result.steps[0]?.durationMs ?? -1) / 1000).toFixed(1);
    const expected =
      `:: Running ${shown}\none\ntwo\nthree\n:: ${shown} exited 0 after ${seconds}s\n` +
      `:: Running go-nowhere-xyz vet ./...\n`;
    assert.ok(log.startsWith(expected), `log was:\n${log}`);
  });

  test('a missing program fails its step with a clear line', async () => {
    const spec = makeSpec({ steps: [['no-such-program-hermetic'], ['echo', 'never-run']] });
    const { result, log } = await run(spec);
    assert.equal(result.status, 'failed');
    assert.deepEqual(result.steps.map((step) => [step.exitCode, step.missing]), [[127, 'no-such-program-hermetic']]);
    assert.match(log, /cannot run no-such-program-hermetic: program "no-such-program-hermetic" not found \(ENOENT\)/);
    assert.doesNotMatch(log, /never-run/);
  });

  test('names the program a shell did not find, from what the shell said', async () => {
    const spec = makeSpec({ steps: [['sh', '-c', 'echo building; no-such-tool-hermetic --version']] });
    const { result } = await run(spec);
    assert.deepEqual(result.steps.map((step) => [step.exitCode, step.missing]), [[127, 'no-such-tool-hermetic']]);
    const other = makeSpec({ steps: [['sh', '-c', 'echo "x: not found"; exit 3']] });
    assert.equal((await run(other)).result.steps[0]?.missing, undefined, 'only a step that exited 127 is searched');
  });

  test('finds the missing program in what shells and exec wrappers print', () => {
    const cases: Array<[string, string | undefined]> = [
      ['sh: 1: make: not found\n', 'make'],
      ['./build.sh: 12: gcc: not found\n', 'gcc'],
      ['bash: line 1: protoc: command not found\n', 'protoc'],
      ['bash: go: command not found\n', 'go'],
      ['setpriv: failed to execute go: No such file or directory\n', 'go'],
      ['unshare: failed to execute ip: No such file or directory\n', 'ip'],
      ["env: 'python3': No such file or directory\n", 'python3'],
      ['env: \u2018node\u2019: No such file or directory\n', 'node'],
      ['sh: 1: make: not found\nlater: sh: 2: cc: not found\n', 'cc'],
      ['some test output\nFAIL\n', undefined],
    ];
    for (const [output, program] of cases) assert.equal(programNotFoundIn(output), program, output);
  });

  test('streams the log across chunks, re-uploading the growing chunk', async () => {
    const line = `${'x'.repeat(99)}\n`;
    // 30 lines of 100 bytes in 3 bursts, slower than the flush interval: chunks fill one after another.
    const script = `for burst in 1 2 3; do for i in 1 2 3 4 5 6 7 8 9 10; do printf '%s\\n' '${line.trim()}'; done; sleep 0.3; done`;
    const spec = makeSpec({ steps: [['sh', '-c', script]], chunks: 4, chunkBytes: 1024 });
    const { result, log } = await run(spec, { flushIntervalMs: 50 });
    assert.equal(result.status, 'passed');
    assert.equal(log.split(line).length - 1, 30);
    const total = Buffer.byteLength(log);
    assert.ok(total > 3000 && total < 4096, `log is ${total} bytes`);
    assert.equal(result.log.bytes, total);
    assert.equal(result.log.chunks, Math.ceil(total / 1024));
    for (let index = 0; index < result.log.chunks - 1; index++) {
      const final = server.objects.get(blobKeys.logChunk(spec.taskId, index));
      assert.equal(final?.length, 1024, `chunk ${index} is full`);
    }
    assert.equal(server.objects.get(blobKeys.logChunk(spec.taskId, result.log.chunks)), undefined);
    // Chunk 0 was uploaded while it grew: several PUTs, each a prefix of the next.
    const puts = server.putsOf(blobKeys.logChunk(spec.taskId, 0));
    assert.ok(puts.length >= 2, `chunk 0 got ${puts.length} PUTs`);
    for (let index = 1; index < puts.length; index++) {
      const previous = puts[index - 1] ?? Buffer.alloc(0);
      assert.ok((puts[index]?.subarray(0, previous.length) ?? Buffer.alloc(0)).equals(previous));
      assert.ok((puts[index]?.length ?? 0) >= previous.length);
    }
  });

  test('streams while the step still runs', async () => {
    const spec = makeSpec({ steps: [['sh', '-c', 'echo early; sleep 2; echo late']] });
    await run(spec, { flushIntervalMs: 100 });
    const early = server.puts.find((put) => put.key === blobKeys.logChunk(spec.taskId, 0) && /^early$/m.test(put.body.toString()));
    assert.ok(early, 'the step\'s first line was uploaded');
    assert.doesNotMatch(early.body.toString(), /^late$/m, 'it was uploaded while the step still ran');
  });

  test('an over-long log keeps its head, a marker saying what was cut, its tail and the exit line', async () => {
    // 400 numbered lines of 50 bytes, 20,000 bytes in all, into a 2 KiB budget.
    const script = `for i in $(seq 1 400); do printf 'line %04d %s\\n' $i ${'x'.repeat(39)}; done`;
    const spec = makeSpec({ steps: [['sh', '-c', script]], chunks: 2, chunkBytes: 1024 });
    const { result, log } = await run(spec);
    assert.equal(result.status, 'passed');
    const command = displayCommand(spec.steps[0]?.argv ?? []);
    const seconds = ((result.steps[0]?.durationMs ?? -1) / 1000).toFixed(1);
    const lines = Array.from({ length: 400 }, (_, index) => `line ${String(index + 1).padStart(4, '0')} ${'x'.repeat(39)}\n`).join('');
    const exitLine = `:: ${command} exited 0 after ${seconds}s\n`;
    const full = `:: Running ${command}\n${lines}${exitLine}`;
    const marker = /\[hermetic: log cut at (\d+) bytes; (\d+) more bytes dropped; the last (\d+) bytes follow\]\n/.exec(log);
    assert.ok(marker, `log was:\n${log}`);
    const [head, dropped, tail] = marker.slice(1).map(Number) as [number, number, number];
    assert.equal(head + dropped + tail, full.length, 'the marker accounts for every byte');
    assert.ok(head >= 512 && tail >= 512, `kept ${head} bytes of head and ${tail} of tail`);
    const expected = `${full.slice(0, head)}${full[head - 1] === '\n' ? '' : '\n'}${marker[0]}${full.slice(full.length - tail)}`;
    assert.equal(log, expected);
    assert.ok(log.endsWith(`line 0400 ${'x'.repeat(39)}\n${exitLine}`), 'the tail ends with the last output and the exit line');
    assert.match(full.slice(full.length - tail), /^line \d{4} /, 'the tail starts at a line');
    assert.ok(Buffer.byteLength(log) <= 2048);
    assert.deepEqual(result.log, { bytes: Buffer.byteLength(log), truncated: true, chunks: 2 });
  });

  test('a log that fits its budget exactly is not cut', async () => {
    // Its last bytes land in the room kept for the notice; the whole log fits, so nothing is cut.
    const budget = 1024;
    const argvFor = (n: number) => ['sh', '-c', `head -c ${n} /dev/zero | tr '\\0' z`];
    const shown = displayCommand(argvFor(999)); // the same number of digits as the real one
    const frame = `:: Running ${shown}\n:: ${shown} exited 0 after 0.0s\n`.length;
    const spec = makeSpec({ steps: [argvFor(budget - frame)], chunks: 1, chunkBytes: budget });
    const { result, log } = await run(spec);
    assert.equal(result.status, 'passed');
    // A slow machine may print a longer duration; the exact fit is only known for "0.0s".
    if ((result.steps[0]?.durationMs ?? 0) >= 50) return;
    assert.equal(Buffer.byteLength(log), budget);
    assert.equal(result.log.truncated, false);
    assert.match(log, /z{500}/);
    assert.doesNotMatch(log, /hermetic: log cut/);
  });

  test('stops a step at the soft deadline: timed-out', async () => {
    const spec = makeSpec({
      steps: [['sh', '-c', 'echo started; sleep 30'], ['echo', 'never-run']],
      deadlineInMs: 1500,
    });
    const started = Date.now();
    const { result, log } = await run(spec, { graceMs: 500 });
    assert.equal(result.status, 'timed-out');
    assert.ok(Date.now() - started < 5000);
    assert.equal(result.steps.length, 1);
    assert.equal(result.steps[0]?.signal, 'SIGTERM');
    assert.match(log, /timed out: the task's deadline is near/);
    assert.doesNotMatch(log, /never-run/);
  });

  test('a step that ignores SIGTERM is killed a second later', async () => {
    const spec = makeSpec({ steps: [['sh', '-c', 'trap "" TERM; echo stubborn; sleep 30']], deadlineInMs: 1000 });
    const started = Date.now();
    const { result } = await run(spec, { graceMs: 500 });
    assert.equal(result.status, 'timed-out');
    assert.equal(result.steps[0]?.signal, 'SIGKILL');
    assert.ok(Date.now() - started < 4000);
  });

  test('default grace: a tenth of the time left, at most 5 s, at least what stopping takes when there is time', () => {
    assert.equal(finishingGraceMs(600_000), 5000);
    assert.equal(finishingGraceMs(40_000), 4000);
    assert.equal(finishingGraceMs(20_000), 3000, 'stopping takes 3 s: a tenth would be too little');
    assert.equal(finishingGraceMs(2000), 1000, 'never more than half the time left');
    assert.equal(finishingGraceMs(-5), 0);
  });

  test('the default grace stops a step early enough to upload the result before the deadline', async () => {
    const spec = makeSpec({ steps: [['sleep', '30']], deadlineInMs: 2000 });
    const { result } = await run(spec);
    assert.equal(result.status, 'timed-out');
    assert.ok(result.finishedAt < spec.deadline, `finished ${result.finishedAt - spec.deadline}ms after the deadline`);
    assert.ok(result.finishedAt - result.startedAt >= 900, `stopped after ${result.finishedAt - result.startedAt}ms`);
  });

  test('kills background processes when their step ends', async () => {
    const marker = `${Date.now() % 100000}.${Math.floor(Math.random() * 1000)}`;
    const spec = makeSpec({ steps: [['sh', '-c', `sleep 3${marker} & echo started`]] });
    const { result, log } = await run(spec);
    assert.equal(result.status, 'passed');
    assert.match(log, /started/);
    assert.deepEqual(processesWithArgument(`3${marker}`), []);
  });

  test('a source that is not there: status error, no step run', async () => {
    const spec = makeSpec({ steps: [['echo', 'never-run']], source: 'missing' });
    const { result, log } = await run(spec);
    assert.equal(result.status, 'error');
    assert.deepEqual(result.steps, []);
    assert.match(result.error ?? '', /cannot fetch the source: download failed: HTTP 404/);
    assert.match(log, /cannot fetch the source: download failed: HTTP 404/);
    assert.doesNotMatch(result.error ?? '', /signature/);
  });

  test('a source that is not a tarball, or is cut short: status error', async () => {
    const whole = tarball([{ path: 'big.txt', body: 'b'.repeat(20_000) }]);
    const bodies = {
      'not a tarball': Buffer.from('this is not a tarball at all, sorry'.repeat(40)),
      'cut short': whole.subarray(0, whole.length - 40),
    };
    for (const [what, body] of Object.entries(bodies)) {
      const spec = makeSpec({ steps: [['echo', 'never-run']] });
      server.objects.set(blobKeys.source('test', spec.taskId), body);
      const { result, log } = await run(spec);
      assert.equal(result.status, 'error', what);
      assert.match(result.error ?? '', /^cannot fetch the source: extract failed: /, what);
      assert.doesNotMatch(log, /never-run/);
    }
  });

  test('a source that unpacks past its byte or entry limit: failed, naming the limit, nothing left, no step run', async () => {
    // 8 files of 256 KiB compress to a few KiB; the limit is 1 MiB.
    const bomb = makeSpec({
      steps: [['echo', 'never-run']],
      source: Array.from({ length: 8 }, (_, index) => ({ path: `f${index + 1}`, body: 'z'.repeat(256 << 10) })),
      unpack: { maxBytes: 1 << 20, maxEntries: 1000 },
    });
    const dir = await workDir();
    const { result, log } = await run(bomb, { workDir: dir });
    assert.equal(result.status, 'failed');
    assert.deepEqual(result.steps, []);
    const reason = 'the source unpacks past its limit of 1048576 bytes (entry 5, "f5", takes it to 1310720); no step was run';
    assert.equal(result.error, reason);
    assert.match(log, new RegExp(`^:: ${reason.replace(/[()]/g, '\\$&')}$`, 'm'));
    assert.deepEqual(await readdir(dir), [], 'no partial tree is left');

    const flood = makeSpec({
      steps: [['echo', 'never-run']],
      source: Array.from({ length: 50 }, (_, index) => ({ path: `tiny-${index}`, body: 'x' })),
      unpack: { maxBytes: 1 << 30, maxEntries: 20 },
    });
    const flooded = await run(flood);
    assert.equal(flooded.result.status, 'failed');
    assert.equal(flooded.result.error, 'the source holds more than its limit of 20 entries; no step was run');
  });

  test('nothing in a hostile tarball lands outside the source directory', async () => {
    const absolute = join(root, `absolute-${newTaskId()}`);
    const spec = makeSpec({
      steps: [['cat', 'fine.txt']],
      source: [
        { path: 'fine.txt', body: 'fine\n' },
        { path: '../evil.txt', body: 'evil\n' },
        { path: '../../evil2.txt', body: 'evil\n' },
        { path: `${absolute}/abs.txt`, body: 'absolute\n' },
        { path: 'up', type: 'SymbolicLink', linkpath: '..' },
        { path: 'up/through-link.txt', body: 'through a link\n' },
        { path: 'out', type: 'SymbolicLink', linkpath: root },
        { path: 'out/through-abs-link.txt', body: 'through a link\n' },
      ],
    });
    const dir = await workDir();
    const result = await runAgent({ spec, workDir: dir, baseEnv });
    assert.equal(result.status, 'passed');
    const log = uploadedLog(spec);
    assert.match(log, /fine\n/);
    assert.match(log, /^:: tar: \.\.\/evil\.txt: path contains '\.\.'$/m);
    assert.match(log, /^:: tar: up: linkpath escapes extraction directory$/m);
    assert.deepEqual((await readdir(dir)).sort(), ['src']);
    assert.equal(existsSync(join(dir, '..', 'evil.txt')), false);
    assert.equal(existsSync(join(root, 'evil2.txt')), false);
    assert.equal(existsSync(join(root, 'through-abs-link.txt')), false);
    assert.equal(existsSync(absolute), false);
    assert.equal(await readFile(join(dir, 'src', 'fine.txt'), 'utf8'), 'fine\n');
  });

  test('steps see spec.env and HERMETIC_*, not the URLs nor the agent process environment', async () => {
    process.env.HERMETIC_TEST_ONLY_IN_TEST_PROCESS = 'leaked';
    try {
      const spec = makeSpec({ steps: [['env']], env: { FROM_SPEC: 'spec-value' } });
      const { result, log } = await run(spec);
      assert.equal(result.status, 'passed');
      assert.match(log, /^FROM_SPEC=spec-value$/m);
      assert.match(log, new RegExp(`^HERMETIC_TASK_ID=${spec.taskId}$`, 'm'));
      assert.match(log, /^HERMETIC_ATTEMPT=1$/m);
      assert.match(log, /^LANG=C\.UTF-8$/m);
      assert.doesNotMatch(log, /HERMETIC_TEST_ONLY_IN_TEST_PROCESS|leaked/);
      assert.doesNotMatch(log, /signature|127\.0\.0\.1/);
    } finally {
      delete process.env.HERMETIC_TEST_ONLY_IN_TEST_PROCESS;
    }
  });

  test('retries failed uploads', async () => {
    const spec = makeSpec({ steps: [['echo', 'retried']] });
    server.failPuts(blobKeys.logChunk(spec.taskId, 0), 503, 2);
    server.failPuts(blobKeys.result(spec.taskId), 500, 2);
    const { result, log } = await run(spec);
    assert.equal(result.status, 'passed');
    assert.equal(result.error, undefined);
    assert.match(log, /retried/);
  });

  test('a log that cannot be uploaded is noted in the result', async () => {
    const spec = makeSpec({ steps: [['echo', 'lost']] });
    server.failPuts(blobKeys.logChunk(spec.taskId, 0), 403, Number.POSITIVE_INFINITY);
    const { result } = await run(spec);
    assert.equal(result.status, 'passed');
    assert.match(result.error ?? '', /log upload failed \(chunk 0: log chunk 0: HTTP 403\)/);
  });

  test('rejects when the result cannot be uploaded', async () => {
    const spec = makeSpec({ steps: [['true']] });
    server.failPuts(blobKeys.result(spec.taskId), 403, Number.POSITIVE_INFINITY);
    await assert.rejects(runAgent({ spec, workDir: await workDir(), baseEnv }), /cannot upload the result.*HTTP 403/);
  });

  test('a slow upload coalesces flushes and loses nothing', async () => {
    const spec = makeSpec({ steps: [['sh', '-c', 'for i in $(seq 1 40); do echo line-$i; sleep 0.02; done']] });
    server.delayPuts(`tasks/${spec.taskId}/log/`, 400);
    const { result, log } = await run(spec, { flushIntervalMs: 10 });
    assert.equal(result.status, 'passed');
    for (let index = 1; index <= 40; index++) assert.match(log, new RegExp(`^line-${index}$`, 'm'));
    const puts = server.putsOf(blobKeys.logChunk(spec.taskId, 0)).length;
    assert.ok(puts <= 6, `${puts} PUTs for about 1s of output with 400ms uploads`);
  });
});

describe('runAgent for sharded runs', () => {
  test('keepGoing runs every step and reports failed', async () => {
    const spec = {
      ...makeSpec({
        steps: [['echo', 'first'], ['sh', '-c', 'exit 3'], ['no-such-program-hermetic'], ['echo', 'last']],
      }),
      keepGoing: true,
    };
    const { result, log } = await run(spec);
    assert.equal(result.status, 'failed');
    assert.deepEqual(result.steps.map((step) => step.exitCode), [0, 3, 127, 0]);
    assert.match(log, /^last$/m);

    const passing = { ...makeSpec({ steps: [['true'], ['echo', 'second']] }), keepGoing: true };
    assert.equal((await run(passing)).result.status, 'passed');
  });

  test('keepGoing still ends at the deadline: timed-out, later steps not run', async () => {
    const spec = {
      ...makeSpec({ steps: [['sh', '-c', 'exit 1'], ['sleep', '30'], ['echo', 'never-run']], deadlineInMs: 1500 }),
      keepGoing: true,
    };
    const { result, log } = await run(spec, { graceMs: 500 });
    assert.equal(result.status, 'timed-out');
    assert.deepEqual(result.steps.map((step) => step.exitCode), [1, null]);
    assert.doesNotMatch(log, /never-run/);
  });

  test("each step's log range holds exactly its own output, in bytes", async () => {
    const spec = withSteps(
      {
        ...makeSpec({
          steps: [
            ['printf', 'h\u00e9llo\\nw\u00f6rld\\n'],
            ['no-such-program-hermetic'],
            ['sh', '-c', 'echo to-stdout; echo to-stderr >&2'],
            ['true'],
          ],
        }),
        keepGoing: true,
      },
      [{}, {}, { capture: true }],
    );
    const { result, log } = await run(spec);
    assert.equal(result.status, 'failed');
    const [printing, missing, captured, silent] = result.steps;
    assert.equal(stepLog(spec, printing), 'h\u00e9llo\nw\u00f6rld\n');
    assert.equal(
      stepLog(spec, missing),
      ':: cannot run no-such-program-hermetic: program "no-such-program-hermetic" not found (ENOENT)\n',
    );
    assert.equal(stepLog(spec, captured), 'to-stderr\n');
    assert.equal(stepLog(spec, silent), '');
    // Between the ranges: only the agent's own header and footer lines.
    const bytes = Buffer.from(log);
    for (const [index, step] of result.steps.entries()) {
      const command = displayCommand(spec.steps[index]?.argv ?? []);
      const header = `:: Running ${command}\n`;
      const start = step.log?.start ?? -1;
      assert.equal(bytes.subarray(start - Buffer.byteLength(header), start).toString(), header);
      assert.ok(bytes.subarray(step.log?.end ?? -1).toString().startsWith(`:: ${command} exited `));
    }
  });

  // What `dist test` of three package units prints: its headings, then `go test`'s blocks, each ended by its
  // package's result line, and its closing line; the pauses put the result lines in separate reads of the pipe.
  const batchOutput = [
    'printf "\n##### Test execution environment.\n# GOARCH: amd64\n\n##### Testing packages.\n"',
    'sleep 0.3; printf "ok  \tbufio\t0.1s\n"',
    'sleep 0.3; printf "%s\n" "--- FAIL: TestX (0.00s)" "    x_test.go:9: broken" FAIL "FAIL\tbytes\t0.2s"',
    // A result line in two writes, and one naming a package out of turn (ignored).
    'sleep 0.3; printf "ok  \tbufio\t9s\nok  \tcontain"; sleep 0.2; printf "er/list\t0.3s\n"',
    // On stderr: only a pause keeps it before what follows on stdout.
    'echo "2024/01/02 03:04:05 Failed: exit status 1" >&2; sleep 0.2; printf "\nFAILED\n"; exit 1',
  ].join('; ');
  const batchUnits = [
    { name: 'go_test:bufio', package: 'bufio' },
    { name: 'go_test:bytes', package: 'bytes' },
    { name: 'go_test:container/list', package: 'container/list' },
  ];

  test('a batched step reports each unit: its verdict, its own output, its time', async () => {
    const spec = withSteps({ ...makeSpec({ steps: [['sh', '-c', batchOutput], ['echo', 'after']] }), keepGoing: true }, [{ units: batchUnits }]);
    const { result, log } = await run(spec);
    assert.equal(result.status, 'failed');
    assert.deepEqual(
      result.steps.map((step) => [step.name, step.exitCode]),
      [['go_test:bufio', 0], ['go_test:bytes', 1], ['go_test:container/list', 0], [spec.steps[1]?.name, 0]],
    );
    const [bufio, bytes, list] = result.steps;
    assert.equal(stepLog(spec, bufio), '\n##### Test execution environment.\n# GOARCH: amd64\n\n##### Testing packages.\nok  \tbufio\t0.1s\n');
    assert.equal(stepLog(spec, bytes), '--- FAIL: TestX (0.00s)\n    x_test.go:9: broken\nFAIL\nFAIL\tbytes\t0.2s\n');
    assert.equal(stepLog(spec, list), 'ok  \tbufio\t9s\nok  \tcontainer/list\t0.3s\n2024/01/02 03:04:05 Failed: exit status 1\n\nFAILED\n');
    // The units' ranges tile the step's output: from after its header to its footer.
    assert.equal(bytes?.log?.start, bufio?.log?.end);
    assert.equal(list?.log?.start, bytes?.log?.end);
    assert.ok(Buffer.from(log).subarray(0, bufio?.log?.start).toString().endsWith(`:: Running ${displayCommand(spec.steps[0]?.argv ?? [])}\n`));
    assert.ok(Buffer.from(log).subarray(list?.log?.end).toString().startsWith(':: sh -c '), 'the footer follows the last unit');
    for (const unit of [bytes, list]) assert.ok((unit?.durationMs ?? 0) >= 250, `${unit?.name} took its own pause, not the whole step`);
  });

  test('a batched step stopped at the deadline: units done keep their verdicts, the one running timed out, the rest not run', async () => {
    const units = [...batchUnits, { name: 'go_test:errors', package: 'errors' }];
    const script = 'printf "##### Testing packages.\nok  \tbufio\t0.1s\n"; sleep 30';
    const spec = withSteps({ ...makeSpec({ steps: [['sh', '-c', script]], deadlineInMs: 1500 }), keepGoing: true }, [{ units }]);
    const { result } = await run(spec, { graceMs: 500 });
    assert.equal(result.status, 'timed-out');
    assert.deepEqual(
      result.steps.map((step) => [step.name, step.exitCode]),
      [['go_test:bufio', 0], ['go_test:bytes', null]],
    );
    assert.equal(stepLog(spec, result.steps[0]), '##### Testing packages.\nok  \tbufio\t0.1s\n');
  });

  test('a batched step that fails with no unit to blame fails every unit without a result line, or all of them', async () => {
    const none = withSteps({ ...makeSpec({ steps: [['sh', '-c', 'echo "go: cannot find GOROOT" >&2; exit 2']] }), keepGoing: true }, [{ units: batchUnits }]);
    const { result } = await run(none);
    assert.deepEqual(result.steps.map((step) => step.exitCode), [2, 2, 2]);
    assert.equal(stepLog(none, result.steps[0]), 'go: cannot find GOROOT\n', 'the first unit without a result holds the output');
    assert.deepEqual(result.steps.slice(1).map((step) => stepLog(none, step)), ['', '']);

    const passedThenFailed = 'printf "ok  \tbufio\t1s\nok  \tbytes\t1s\nok  \tcontainer/list\t1s\n"; echo "go tool dist: FAILED" >&2; exit 1';
    const unpinned = withSteps({ ...makeSpec({ steps: [['sh', '-c', passedThenFailed]] }), keepGoing: true }, [{ units: batchUnits }]);
    assert.deepEqual((await run(unpinned)).result.steps.map((step) => step.exitCode), [1, 1, 1]);
  });

  test('log ranges point into the uploaded log, the cut marker standing in for what was dropped', async () => {
    const big = ['sh', '-c', 'yes yyyyyyyyy | head -c 3000'];
    const spec = makeSpec({ steps: [big, ['echo', 'middle'], big, ['echo', 'after']], chunks: 1, chunkBytes: 1024 });
    const { result } = await run(spec);
    assert.equal(result.log.truncated, true);
    const [first, middle, last, after] = result.steps;
    const marker = '\\n?\\[hermetic: log cut at \\d+ bytes; \\d+ more bytes dropped; the last \\d+ bytes follow\\]\\n';
    assert.match(stepLog(spec, first), new RegExp(`^(y{9}\\n)+y*${marker}$`), 'a step cut at its end ends with the marker');
    assert.match(stepLog(spec, middle), new RegExp(`^${marker}$`), 'a step all dropped is the marker');
    assert.match(stepLog(spec, last), new RegExp(`^${marker}(y{9}\\n)+$`), 'a step cut at its start starts with the marker');
    assert.equal(stepLog(spec, after), 'after\n', 'a step in the tail is found there');
  });

  test('capture puts stdout in the output, not the log, cut at outputBytes', async () => {
    const spec = withSteps(
      {
        ...makeSpec({
          steps: [
            ['printf', 'abc'],
            ['echo', 'in-the-log'],
            ['sh', '-c', `head -c 3000 /dev/zero | tr '\\0' x; echo err >&2`],
          ],
        }),
        outputBytes: 2000,
      },
      [{ capture: true }, {}, { capture: true }],
    );
    const { result, log } = await run(spec);
    assert.equal(result.status, 'passed');
    assert.equal(result.output, `abc${'x'.repeat(1997)}`);
    assert.equal(result.outputTruncated, true);
    assert.match(log, /^in-the-log$/m);
    assert.equal(stepLog(spec, result.steps[0]), '');
    assert.equal(stepLog(spec, result.steps[2]), 'err\n');
    assert.doesNotMatch(log, /xxx/);

    const small = withSteps(makeSpec({ steps: [['printf', 'unit-a\\nunit-b\\n']] }), [{ capture: true }]);
    const listed = (await run(small)).result;
    assert.equal(listed.output, 'unit-a\nunit-b\n');
    assert.equal(listed.outputTruncated, undefined);
    const none = (await run(makeSpec({ steps: [['echo', 'plain']] }))).result;
    assert.equal(none.output, undefined);
  });

  test('a step runs in its dir with its env over the task env', async () => {
    const spec = withSteps(
      makeSpec({
        steps: [
          ['sh', '-c', 'cat file.txt; echo "$TASK_VAR $STEP_VAR"'],
          ['sh', '-c', 'ls; echo "$TASK_VAR $STEP_VAR $HERMETIC_TASK_ID"'],
        ],
        env: { TASK_VAR: 'from-task', STEP_VAR: 'task-default' },
        source: [
          { path: 'README', body: 'top\n' },
          { path: 'sub/dir/file.txt', body: 'in sub/dir\n' },
        ],
      }),
      [{ dir: 'sub/dir', env: { STEP_VAR: 'from-step', HERMETIC_TASK_ID: 'spoofed' } }],
    );
    const { result } = await run(spec);
    assert.equal(result.status, 'passed');
    assert.equal(stepLog(spec, result.steps[0]), 'in sub/dir\nfrom-task from-step\n');
    assert.equal(stepLog(spec, result.steps[1]), `README\nsub\nfrom-task task-default ${spec.taskId}\n`);
  });

  test('a step dir that is missing, a file, or leads out of the source: status error', async () => {
    const cases: [string, RegExp][] = [
      ['no/such/dir', /cannot run step step-1: directory "no\/such\/dir" is not in the source/],
      ['README', /cannot run step step-1: "README" is not a directory/],
      ['escape', /cannot run step step-1: directory "escape" leads outside the source/],
    ];
    for (const [dir, message] of cases) {
      const spec = withSteps(makeSpec({ steps: [['ln', '-s', '/', 'escape'], ['echo', 'never-run']] }), [{}, { dir }]);
      const { result, log } = await run(spec);
      assert.equal(result.status, 'error', dir);
      assert.match(result.error ?? '', message);
      assert.match(log, message);
      assert.doesNotMatch(log, /never-run/);
      assert.equal(result.steps.length, 1);
    }
  });

  test('a make task uploads a snapshot that a shard task unpacks', async () => {
    const key = `test-${newTaskId()}`;
    const snapshotKey = blobKeys.snapshot(key);
    const build = [
      'mkdir -p bin cache ../home/.cache/go-build',
      'echo built > bin/tool',
      'echo scratch > cache/junk',
      'echo cached > ../home/.cache/go-build/entry',
    ].join(' && ');
    const make = {
      ...makeSpec({ steps: [['sh', '-c', build]], source: [{ path: 'README', body: 'the source\n' }] }),
      snapshot: { url: server.url(snapshotKey), exclude: ['cache'], maxBytes: 1 << 20 },
    };
    // The first PUT fails: the file-backed body is read again for the retry.
    server.failPuts(snapshotKey, 503, 1);
    const makeDir = await workDir();
    const made = await run(make, { workDir: makeDir });
    assert.equal(made.result.status, 'passed', made.log);
    assert.equal(made.result.error, undefined);
    const uploaded = server.objects.get(snapshotKey);
    assert.ok(uploaded, 'the snapshot was uploaded');
    assert.equal(made.result.snapshot?.bytes, uploaded.length);
    assert.ok((made.result.snapshot?.files ?? 0) >= 8, `${made.result.snapshot?.files} files`);
    assert.ok((made.result.snapshot?.packSeconds ?? -1) >= 0 && (made.result.snapshot?.uploadSeconds ?? -1) >= 0);
    assert.match(made.log, /^:: snapshot: 0\.0 MB, \d+ files, packed in \d+\.\ds, uploaded in \d+\.\ds$/m);
    assert.deepEqual((await readdir(makeDir)).sort(), ['home', 'src'], 'the packed file is gone');
    assert.ok((made.result.source?.seconds ?? -1) >= 0);

    const shard = {
      ...makeSpec({
        steps: [
          ['cat', 'README', 'bin/tool', '../home/.cache/go-build/entry'],
          ['sh', '-c', 'test ! -e cache && echo no-cache'],
        ],
        source: 'missing',
      }),
      source: { url: server.url(snapshotKey), layout: 'snapshot' as const },
    };
    const shardDir = await workDir();
    const { result, log } = await run(shard, { workDir: shardDir });
    assert.equal(result.status, 'passed', log);
    assert.equal(stepLog(shard, result.steps[0]), 'the source\nbuilt\ncached\n');
    assert.equal(stepLog(shard, result.steps[1]), 'no-cache\n');
    assert.deepEqual((await readdir(shardDir)).sort(), ['home', 'src']);
    assert.ok((result.source?.seconds ?? -1) >= 0);
    assert.equal(result.snapshot, undefined);
  });

  test('a fetch task uploads the module cache its steps wrote; a build task gets it read-only, and a make task passes it to its shards', async () => {
    const modulesKey = blobKeys.modules(`test-${newTaskId()}`);
    const fill = [
      'mkdir -p "$GOMODCACHE/cache/download/example.com/dep/@v" "$GOMODCACHE/cache/vcs/abc"',
      'echo zip > "$GOMODCACHE/cache/download/example.com/dep/@v/v1.0.0.zip"',
      'echo clone > "$GOMODCACHE/cache/vcs/abc/HEAD"',
    ].join(' && ');
    const fetch = { ...makeSpec({ steps: [['sh', '-c', fill]] }), goModules: { upload: { url: server.url(modulesKey), maxBytes: 1 << 20 } } };
    const fetched = await run(fetch);
    assert.equal(fetched.result.status, 'passed', fetched.log);
    assert.match(fetched.log, /^:: module cache: 0\.0 MB, \d+ files, packed in/m);
    assert.ok(server.objects.has(modulesKey), 'the module cache was uploaded');

    const snapshotKey = blobKeys.snapshot(`test-${newTaskId()}`);
    const use = [
      'test "$GOMODCACHE" = "$(cd .. && pwd)/gomodcache"',
      'cat "$GOMODCACHE/cache/download/example.com/dep/@v/v1.0.0.zip"',
      'test ! -e "$GOMODCACHE/cache/vcs" && echo no-vcs',
      'stat -c %a "$GOMODCACHE/cache/download" "$GOMODCACHE/cache/download/example.com/dep/@v/v1.0.0.zip"',
    ].join(' && ');
    const make = { ...makeSpec({ steps: [['sh', '-c', use]] }), goModules: { url: server.url(modulesKey) }, snapshot: { url: server.url(snapshotKey), exclude: [], maxBytes: 1 << 20 } };
    const made = await run(make);
    assert.equal(made.result.status, 'passed', made.log);
    assert.equal(stepLog(make, made.result.steps[0]), 'zip\nno-vcs\n555\n444\n', 'unpacked read-only, without the VCS checkouts');

    const shard = { ...makeSpec({ steps: [['sh', '-c', use]], source: 'missing' }), source: { url: server.url(snapshotKey), layout: 'snapshot' as const }, goModules: {} };
    const sharded = await run(shard);
    assert.equal(sharded.result.status, 'passed', sharded.log);
    assert.equal(stepLog(shard, sharded.result.steps[0]), 'zip\nno-vcs\n555\n444\n', 'the snapshot brought the module cache');
  });

  test('a snapshot without src/ still gives the steps a src directory', async () => {
    const spec = makeSpec({ steps: [['sh', '-c', 'basename "$PWD"; cat ../home/note']] });
    server.objects.set(blobKeys.source('test', spec.taskId), tarball([{ path: 'home/note', body: 'only home\n' }]));
    const { result } = await run({ ...spec, source: { ...spec.source, layout: 'snapshot' } });
    assert.equal(result.status, 'passed');
    assert.equal(stepLog(spec, result.steps[0]), 'src\nonly home\n');
  });

  test('a snapshot over a limit: failed; refused by the store: error; nothing uploaded either way; a failed task packs none', async () => {
    const over = makeSpec({ steps: [['true']] });
    const overKey = blobKeys.snapshot(`over-${over.taskId}`);
    const dir = await workDir();
    const overSnapshot = { url: server.url(overKey), exclude: [], maxBytes: 10 };
    const tooBig = await run({ ...over, snapshot: overSnapshot }, { workDir: dir });
    assert.equal(tooBig.result.status, 'failed');
    assert.match(tooBig.result.error ?? '', /^snapshot not uploaded: it is \d+ bytes, over its limit of 10 bytes$/);
    assert.match(tooBig.log, /^:: snapshot not uploaded: it is \d+ bytes, over its limit of 10 bytes$/m);
    assert.equal(tooBig.result.snapshot, undefined);
    assert.deepEqual(server.putsOf(overKey), []);
    assert.deepEqual((await readdir(dir)).sort(), ['src']);

    // What the shards would refuse to unpack is not uploaded either.
    const limits = { unpack: { maxBytes: 1 << 20, maxEntries: 1000 } };
    const wide = makeSpec({ steps: [['sh', '-c', 'head -c 2000000 /dev/zero > zeros']], ...limits });
    const wideKey = blobKeys.snapshot(`wide-${wide.taskId}`);
    const unpacksTooBig = await run({ ...wide, snapshot: { url: server.url(wideKey), exclude: [], maxBytes: 1 << 30 } });
    assert.equal(unpacksTooBig.result.status, 'failed');
    assert.match(unpacksTooBig.result.error ?? '', /^snapshot not uploaded: it unpacks to 20000\d\d bytes, over its limit of 1048576 bytes$/);
    const many = makeSpec({ steps: [['sh', '-c', 'for i in $(seq 1 1000); do : > f$i; done']], ...limits });
    const manyKey = blobKeys.snapshot(`many-${many.taskId}`);
    const tooMany = await run({ ...many, snapshot: { url: server.url(manyKey), exclude: [], maxBytes: 1 << 30 } });
    assert.equal(tooMany.result.status, 'failed');
    assert.match(tooMany.result.error ?? '', /^snapshot not uploaded: it holds 100\d entries, over its limit of 1000$/);
    assert.deepEqual([...server.putsOf(wideKey), ...server.putsOf(manyKey)], []);

    const refused = makeSpec({ steps: [['true']] });
    const refusedKey = blobKeys.snapshot(`refused-${refused.taskId}`);
    server.failPuts(refusedKey, 403, Number.POSITIVE_INFINITY);
    const denied = await run({ ...refused, snapshot: { url: server.url(refusedKey), exclude: [], maxBytes: 1 << 20 } });
    assert.equal(denied.result.status, 'error');
    assert.equal(denied.result.error, 'cannot upload the snapshot: snapshot: HTTP 403');
    assert.match(denied.log, /^:: cannot upload the snapshot: snapshot: HTTP 403$/m);

    const failing = makeSpec({ steps: [['false']] });
    const failingKey = blobKeys.snapshot(`failing-${failing.taskId}`);
    const failed = await run({ ...failing, snapshot: { url: server.url(failingKey), exclude: [], maxBytes: 1 << 20 } });
    assert.equal(failed.result.status, 'failed');
    assert.deepEqual(server.putsOf(failingKey), []);
  });
});

describe('agent program', () => {
  function runMain(args: string[], stdin: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [agentMain, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
      child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(stdin);
    });
  }

  test('--help prints usage', async () => {
    const { code, stdout } = await runMain(['--help'], '');
    assert.equal(code, 0);
    assert.match(stdout, /usage: .*--workdir DIR/);
  });

  test('a bad spec exits 2 naming the field', async () => {
    const spec = makeSpec({ steps: [['true']] });
    const { code, stderr } = await runMain(['--workdir', await workDir()], JSON.stringify({ ...spec, steps: [] }));
    assert.equal(code, 2);
    assert.match(stderr, /bad task spec: steps:/);
    const notJson = await runMain(['--workdir', await workDir()], '{');
    assert.equal(notJson.code, 2);
    const noWorkdir = await runMain([], JSON.stringify(spec));
    assert.equal(noWorkdir.code, 2);
    assert.match(noWorkdir.stderr, /--workdir is required/);
  });

  test('exits 0 once the result is uploaded, 1 when it cannot be', async () => {
    const spec = makeSpec({ steps: [['echo', 'from the program']] });
    const ok = await runMain(['--workdir', await workDir()], JSON.stringify(spec));
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(uploadedResult(spec).status, 'passed');
    assert.match(uploadedLog(spec), /from the program/);

    const refused = makeSpec({ steps: [['true']] });
    server.failPuts(blobKeys.result(refused.taskId), 403, Number.POSITIVE_INFINITY);
    const failed = await runMain(['--workdir', await workDir()], JSON.stringify(refused));
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /cannot upload the result/);
  });
});
