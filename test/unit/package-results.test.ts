import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { createPackageSplitter, packageOutcomes, type PackageClose, type PackageUnit } from '../../shared/agent/package-results.ts';

/** What Go 1.19's `dist test` printed (stdout and stderr together) for three package units; see test/fixtures/dist-test. */
function fixture(name: string): Buffer {
  return readFileSync(new URL(`../fixtures/dist-test/${name}`, import.meta.url));
}

const go119 = (packages: string[]): PackageUnit[] => packages.map((pkg) => ({ name: `go_test:${pkg}`, package: pkg }));

/** Feeds `output` to a splitter in pieces of `size` bytes, as a pipe might hand it over; the clock ticks per piece. */
function split(units: PackageUnit[], output: Buffer, size: number): PackageClose[] {
  let clock = 0;
  const splitter = createPackageSplitter(units, () => clock);
  const closes: PackageClose[] = [];
  for (let at = 0; at < output.length; at += size) {
    clock += 1;
    closes.push(...splitter.push(output.subarray(at, at + size), at));
  }
  return closes;
}

function shares(output: Buffer, outcomes: ReturnType<typeof packageOutcomes>): string[] {
  return outcomes.map((outcome) => output.subarray(outcome.log?.start, outcome.log?.end).toString('utf8'));
}

const ended = (output: Buffer, exitCode: number | null, more: { timedOut?: boolean; signal?: string } = {}) => ({
  exitCode,
  signal: more.signal ?? null,
  timedOut: more.timedOut ?? false,
  startedAt: 0,
  endedAt: 1000,
  log: { start: 0, end: output.length },
});

describe('splitting a batched dist test into units', () => {
  it('gives each unit its verdict and its own output, however the pipe cuts it (Go 1.19, one unit failing)', () => {
    const output = fixture('go1.19-one-failing.txt');
    const units = go119(['bufio', 'errors', 'unicode/utf8']);
    for (const size of [1, 7, 64, output.length]) {
      const outcomes = packageOutcomes(units, split(units, output, size), ended(output, 1));
      assert.deepEqual(outcomes.map((outcome) => [outcome.name, outcome.exitCode]), [['go_test:bufio', 0], ['go_test:errors', 1], ['go_test:unicode/utf8', 0]]);
      const [bufio, errors, utf8] = shares(output, outcomes);
      assert.match(bufio ?? '', /^\n##### Test execution environment\.\n[^]*\n##### Testing packages\.\nok  \tbufio\t0\.161s\n$/);
      assert.equal(errors, '--- FAIL: TestHermeticFails (0.00s)\n    zz_hermetic_test.go:5: made to fail\nFAIL\nFAIL\terrors\t0.007s\n');
      assert.equal(utf8, 'ok  \tunicode/utf8\t0.006s\nFAIL\ngo tool dist: Failed: exit status 1\n', 'the last unit holds dist\'s closing lines');
      assert.equal(shares(output, outcomes).join(''), output.toString('utf8'), 'the shares tile the output');
    }
  });

  it('a package whose test does not build fails on its own; the compiler\'s early lines land before it (Go 1.19)', () => {
    const output = fixture('go1.19-build-failed.txt');
    const units = go119(['bufio', 'unicode/utf8', 'errors']);
    const outcomes = packageOutcomes(units, split(units, output, 13), ended(output, 1));
    assert.deepEqual(outcomes.map((outcome) => outcome.exitCode), [0, 1, 0]);
    const [bufio, utf8] = shares(output, outcomes);
    // go test prints build errors as they happen, not in package order: the verdict is exact, the text is where it fell.
    assert.match(bufio ?? '', /undefined: undefinedThing\nok  \tbufio\t\(cached\)\n$/);
    assert.equal(utf8, 'FAIL\tunicode/utf8 [build failed]\n');
  });

  it('reads Go 1.21+ output, whose package units are bare paths', () => {
    // From Go 1.21's cmd/dist source: the same headings; std units named by package; `go test` prints its usual lines.
    const output = Buffer.from('\n##### Test execution environment.\n# GOARCH: amd64\n\n##### Testing packages.\nok  \tbufio\t0.05s\n?   \tcmd/internal/bio\t[no test files]\nok  \terrors\t0.01s [no tests to run]\n\nALL TESTS PASSED\n');
    const units = ['bufio', 'cmd/internal/bio', 'errors'].map((pkg) => ({ name: pkg, package: pkg }));
    const outcomes = packageOutcomes(units, split(units, output, 5), ended(output, 0));
    assert.deepEqual(outcomes.map((outcome) => outcome.exitCode), [0, 0, 0]);
    assert.deepEqual(shares(output, outcomes).slice(1), ['?   \tcmd/internal/bio\t[no test files]\n', 'ok  \terrors\t0.01s [no tests to run]\n\nALL TESTS PASSED\n']);
  });

  it('times a unit from the previous result line to its own', () => {
    const output = fixture('go1.19-one-failing.txt');
    const units = go119(['bufio', 'errors', 'unicode/utf8']);
    const closes = split(units, output, 1);
    const outcomes = packageOutcomes(units, closes, { ...ended(output, 1), startedAt: 0 });
    assert.deepEqual(outcomes.map((outcome) => outcome.durationMs), [closes[0]?.at, (closes[1]?.at ?? 0) - (closes[0]?.at ?? 0), (closes[2]?.at ?? 0) - (closes[1]?.at ?? 0)]);
  });

  it('ignores result lines out of turn and lines too long to be one', () => {
    const units = go119(['a', 'b']);
    const output = Buffer.from(`ok  \tb\t1s\n${'x'.repeat(100_000)}ok  \ta\t1s\nok  \ta\t1s\nok  \tb\t1s\n`);
    const closes = split(units, output, 4096);
    assert.deepEqual(closes.map((close) => close.end), [output.length - 'ok  \tb\t1s\n'.length, output.length]);
  });

  it('at the deadline: the unit without a result is the one stopped, the others get no outcome', () => {
    const output = Buffer.from('##### Testing packages.\nok  \ta\t1s\n--- half of b');
    const units = go119(['a', 'b', 'c']);
    const outcomes = packageOutcomes(units, split(units, output, 3), ended(output, null, { timedOut: true, signal: 'SIGTERM' }));
    assert.deepEqual(outcomes.map((outcome) => [outcome.name, outcome.exitCode, outcome.signal]), [['go_test:a', 0, undefined], ['go_test:b', null, 'SIGTERM']]);
    assert.equal(shares(output, outcomes)[1], '--- half of b');
  });
});
