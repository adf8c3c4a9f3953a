import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { parseConfig } from '../../shared/core/config/config.ts';
import { ConfigError } from '../../shared/core/errors.ts';
import { goTestDirSplit, planShards } from '../../shared/core/sharding/planner.ts';
import { TaskSpec } from '../../shared/core/model/wire.ts';
import { distNamingOf, distPackageOf, mergedUnitOutputs, parseListing, planUnitsOf, smallUnitSeconds, unitStep, unitSteps } from '../../shared/core/sharding/test-suites.ts';

describe('test suites: Go modules', () => {
  it('lists the packages that have tests, with their tests, in listing order', () => {
    const output = [
      'TestParse',
      'TestFormat',
      'ExampleParse',
      'BenchmarkParse',
      'ok  \texample.com/m/parse\t0.004s',
      '?   \texample.com/m/cmd/tool\t[no test files]',
      'BenchmarkOnly',
      'ok  \texample.com/m/bench\t0.002s',
      'FuzzDecode',
      'ok  \texample.com/m/codec\t(cached)',
      '',
    ].join('\n');
    assert.deepEqual(parseListing('go-module', output), [
      { name: 'example.com/m/parse', tests: ['TestParse', 'TestFormat', 'ExampleParse'] },
      { name: 'example.com/m/codec', tests: ['FuzzDecode'] },
    ]);
  });

  it('refuses output that is not a listing, naming the line', () => {
    assert.throws(() => parseListing('go-module', 'TestA\n$(reboot)\nok  \tm\t0.1s\n'), /^Error: listing line 2: expected a test name or a package result, got "\$\(reboot\)"$/);
    assert.throws(() => parseListing('go-module', 'TestA\n'), /ends with test names but no package result/);
    assert.throws(() => parseListing('go-module', 'ok  \t../../etc\t0.1s\n'), /not a package path/);
  });

  it('runs a whole package, or a part of its tests with -run, never from the test cache', () => {
    const planned = planShards(
      planUnitsOf('go-module', [{ name: 'm/a', tests: ['TestA'] }, { name: 'm/big', tests: ['TestX', 'TestY.Z'] }], new Map([['m/a', 1], ['m/big', 100]])),
      3,
    ).shards.flatMap((shard) => shard.units);
    const whole = planned.find((unit) => unit.name === 'm/a');
    const parts = planned.filter((unit) => unit !== whole);
    assert.ok(whole);
    assert.deepEqual(unitStep({ kind: 'go-module', unitEnv: {} }, whole).argv, ['go', 'test', '-count=1', 'm/a']);
    assert.deepEqual(parts.map((unit) => unitStep({ kind: 'go-module', unitEnv: {} }, unit).argv).sort(), [
      ['go', 'test', '-count=1', '-run', '^(TestX)$', 'm/big'],
      ['go', 'test', '-count=1', '-run', '^(TestY\\.Z)$', 'm/big'],
    ]);
  });
});

describe('test suites: the Go tree', () => {
  it('lists dist test units one per line, and refuses anything else', () => {
    assert.deepEqual(parseListing('go-tree', 'go_test:archive/tar\nruntime:cpu124\ntest:0_1\n'), [
      { name: 'go_test:archive/tar' },
      { name: 'runtime:cpu124' },
      { name: 'test:0_1' },
    ]);
    assert.throws(() => parseListing('go-tree', 'go_test:a\ngo test; rm -rf /\n'), /listing line 2: expected a dist test name/);
    assert.throws(() => parseListing('go-tree', 'api\napi\n'), /api is listed twice/);
  });

  it('runs each unit by its exact name in src/, and a test directory part with its GO_TEST_SHARDS', () => {
    const plan = planShards(
      planUnitsOf('go-tree', [{ name: 'go_test:bufio' }, { name: 'test:0_1' }], new Map([['go_test:bufio', 10], ['test:0_1', 95]])),
      4,
    );
    const suite = parseConfig({ builders: { go: { type: 'go-tree' } } }, 'test.json').builders.get('go')?.tests;
    assert.ok(suite);
    const steps = plan.shards.flatMap((shard) => shard.units).map((unit) => unitStep(suite, unit));
    const bufio = steps.find((step) => step.name === 'go_test:bufio');
    assert.deepEqual(bufio, { name: 'go_test:bufio', argv: ['../bin/go', 'tool', 'dist', 'test', 'go_test:bufio'], dir: 'src', env: { GO_BUILDER_NAME: '' } });
    const parts = steps.filter((step) => step.name.startsWith('test:'));
    assert.ok(parts.length >= 2, 'the test directory is cut where it pins the critical path');
    for (const step of parts) {
      assert.deepEqual(step.argv, ['../bin/go', 'tool', 'dist', 'test', step.name]);
      assert.deepEqual(step.env, { GO_BUILDER_NAME: '', GO_TEST_SHARDS: String(parts.length) });
    }
  });

  it('tells the package units of a listing by its naming: go_test:<pkg> through Go 1.20, bare paths from 1.21', () => {
    const go119 = parseListing('go-tree', 'go_test:bufio\ngo_test:cmd/go\nosusergo\nruntime:cpu124\napi\n');
    assert.equal(distNamingOf(go119), 'go_test-prefix');
    assert.deepEqual(go119.map((unit) => distPackageOf(unit.name, 'go_test-prefix')), ['bufio', 'cmd/go', undefined, undefined, undefined]);
    const go124 = parseListing('go-tree', 'bufio\ncmd/go\nos/user:osusergo\nruntime:cpu124\ncmd/internal/testdir:1_2\n');
    assert.equal(distNamingOf(go124), 'bare');
    assert.deepEqual(go124.map((unit) => distPackageOf(unit.name, 'bare')), ['bufio', 'cmd/go', undefined, undefined, undefined]);
  });

  it('runs consecutive small package units in one dist test, and every other unit in its own', () => {
    const suite = { kind: 'go-tree' as const, unitEnv: { GO_BUILDER_NAME: '' } };
    const whole = (name: string, estimate = 3) => ({ name, run: { kind: 'whole' as const }, estimate });
    const units = [
      whole('go_test:a'),
      whole('go_test:b'),
      whole('go_test:slow', smallUnitSeconds + 1),
      whole('go_test:c'),
      whole('api'),
      whole('go_test:d'),
      whole('go_test:e'),
      whole('go_test:f'),
    ];
    const steps = unitSteps(suite, units, 'go_test-prefix');
    const dist = ['../bin/go', 'tool', 'dist', 'test'];
    assert.deepEqual(
      steps.map((step) => [step.argv.slice(4), step.units?.map((unit) => unit.package)]),
      [
        [['go_test:a', 'go_test:b'], ['a', 'b']],
        [['go_test:slow'], undefined],
        [['go_test:c'], undefined],
        [['api'], undefined],
        [['go_test:d', 'go_test:e', 'go_test:f'], ['d', 'e', 'f']],
      ],
    );
    for (const step of steps) {
      assert.deepEqual(step.argv.slice(0, 4), dist);
      assert.equal(step.dir, 'src');
      assert.deepEqual(step.env, { GO_BUILDER_NAME: '' });
    }
    // The spec a shard gets stays valid, and a listing whose naming is unknown runs every unit on its own.
    assert.ok(steps.every((step) => TaskSpec.shape.steps.element.safeParse({ name: step.name, argv: step.argv, dir: step.dir, env: step.env, ...(step.units === undefined ? {} : { units: step.units }) }).success));
    assert.equal(unitSteps(suite, units, undefined).length, units.length);
    assert.deepEqual(unitSteps({ kind: 'go-module', unitEnv: {} }, [whole('m/a'), whole('m/b')], 'bare').map((step) => step.units), [undefined, undefined]);
  });

  it("lists and runs a Go tree builder without the network as no Go builder, and one with it as one", () => {
    const builders = parseConfig({ builders: { off: { type: 'go-tree' }, on: { type: 'go-tree', network: true } } }, 'test.json').builders;
    assert.deepEqual(builders.get('off')?.tests?.list.env, { GO_BUILDER_NAME: '' });
    assert.deepEqual(builders.get('off')?.tests?.unitEnv, { GO_BUILDER_NAME: '' });
    assert.equal(builders.get('on')?.tests?.list.env, undefined);
    assert.deepEqual(builders.get('on')?.tests?.unitEnv, {});
  });

  it('plans the test directory parts from their learned durations, by part name', () => {
    const [unit] = planUnitsOf('go-tree', [{ name: 'test:0_1' }], new Map([['test:0_1', 90], ['test:1_4', 40], ['go_test:fmt', 3]]));
    assert.deepEqual(unit?.split, goTestDirSplit({ partSeconds: { 'test:1_4': 40 } }));
  });

  it("joins dist test units as one run: the environment once, a heading where it changes, no closing lines", () => {
    const environment = '\n##### Test execution environment.\n# GOARCH: amd64\n# CPU: AMD EPYC\n';
    const unit = (body: string, heading = 'Testing packages.') => `${environment}\n##### ${heading}\n${body}\n\nALL TESTS PASSED (some were excluded)\n`;
    const merged = mergedUnitOutputs('go-tree', [
      unit('ok  \tfmt\t0.1s'),
      unit('ok  \tbufio\t0.2s'),
      unit('--- FAIL: TestX (0.00s)\n\ngoroutine 1 [running]:\nFAIL\tnet\t0.3s\ngo tool dist: Failed: exit status 1'),
      unit('ok  \tmisc/cgo/test\t9.1s', '../misc/cgo/test'),
    ]);
    assert.equal(
      merged,
      [
        '##### Test execution environment.',
        '# GOARCH: amd64',
        '# CPU: AMD EPYC',
        '',
        '##### Testing packages.',
        'ok  \tfmt\t0.1s',
        'ok  \tbufio\t0.2s',
        '--- FAIL: TestX (0.00s)',
        '',
        'goroutine 1 [running]:',
        'FAIL\tnet\t0.3s',
        'go tool dist: Failed: exit status 1',
        '',
        '##### ../misc/cgo/test',
        'ok  \tmisc/cgo/test\t9.1s',
        '',
      ].join('\n'),
    );
    assert.equal(mergedUnitOutputs('go-module', ['ok  \ta\t0.1s\n', 'ok  \tb\t0.1s']), 'ok  \ta\t0.1s\nok  \tb\t0.1s\n');
  });

  it('reads the real Go 1.19 listing, all 284 units', async () => {
    const recording = JSON.parse(await readFile(new URL('../../bench/data/go1.19-linux-amd64-2cpu.json', import.meta.url), 'utf8')) as { listing: string[] };
    const listed = parseListing('go-tree', `${recording.listing.join('\n')}\n`);
    assert.equal(listed.length, 284);
  });
});

describe('config: sharded builders', () => {
  const parse = (builders: unknown) => parseConfig({ builders }, 'test.json');

  it('gives a go-tree builder its make, list and default shards, and a go-module builder shards when asked', () => {
    const config = parse({
      go: { type: 'go-tree', hostType: 'linux-amd64' },
      mod: { type: 'go-module', shards: { postSubmit: 6, trybot: 12 }, retryFailed: false },
      plain: { type: 'go-module' },
    });
    const go = config.builders.get('go');
    assert.deepEqual(go?.tests?.make, [{ name: 'make.bash', argv: ['bash', 'make.bash'], dir: 'src' }]);
    assert.deepEqual(go?.tests?.shards, { postSubmit: 4, trybot: 4 });
    assert.equal(go?.env['GOROOT_BOOTSTRAP'], '/usr/lib/go');
    assert.equal(go?.timeoutSeconds, 3600);
    assert.deepEqual(config.builders.get('mod')?.tests?.shards, { postSubmit: 6, trybot: 12 });
    assert.equal(config.builders.get('mod')?.tests?.retryFailed, false);
    assert.equal(config.builders.get('plain')?.tests, undefined, 'a go-module builder without shards builds whole');
  });

  it('refuses a bad shard count, naming the field', () => {
    const refused = (shards: unknown, message: RegExp) =>
      assert.throws(() => parse({ mod: { type: 'go-module', shards } }), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, message);
        return true;
      });
    refused(0, /^test\.json: builders\.mod\.shards: Too small: expected number to be >=1$/);
    refused('four', /^test\.json: builders\.mod\.shards: expected a shard count \(1 to 256\), or \{ "postSubmit": N, "trybot": M \}$/);
  });
});
