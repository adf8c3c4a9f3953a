import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig, parseConfig } from '../../shared/core/config/config.ts';
import { ConfigError } from '../../shared/core/errors.ts';

/** Asserts that parsing `text` as the config file test.json throws a ConfigError whose message matches. */
function refused(text: string, message: RegExp): void {
  assert.throws(() => parseConfig(JSON.parse(text), 'test.json'), (error: unknown) => {
    assert.ok(error instanceof ConfigError, String(error));
    assert.match(error.message, message);
    return true;
  });
}

const command = '{ "type": "command", "command": "make" }';

describe('config: names JavaScript objects already use', () => {
  it('refuses a "__proto__" key anywhere, naming the field, rather than dropping it', () => {
    refused(`{ "builders": { "__proto__": ${command}, "b": ${command} } }`, /^test\.json: builders\.__proto__: "__proto__" is not allowed as a key/);
    refused(`{ "builders": { "b": { "type": "command", "command": "make", "env": { "__proto__": "1" } } } }`, /^test\.json: builders\.b\.env\.__proto__: /);
    refused(`{ "builders": { "b": ${command} }, "repos": [{ "url": "/r", "__proto__": {} }] }`, /^test\.json: repos\.0\.__proto__: /);
  });

  it('refuses "constructor" and "prototype" as a builder, repo or host type name, naming the field', () => {
    refused(`{ "builders": { "constructor": ${command} } }`, /^test\.json: builders\.constructor: "constructor" is reserved/);
    refused(`{ "builders": { "b": ${command} }, "repos": [{ "url": "/r", "name": "prototype" }] }`, /^test\.json: repos\.0\.name: "prototype" is reserved/);
    refused(`{ "builders": { "b": { "type": "command", "command": "make", "hostType": "constructor" } } }`, /^test\.json: builders\.b\.hostType: "constructor" is reserved/);
    // A repo named after its URL's last segment is checked the same way.
    refused(`{ "builders": { "b": ${command} }, "repos": [{ "url": "/srv/constructor.git" }] }`, /^test\.json: repos\.0\.name: "constructor" is reserved/);
  });
});

describe('config: builders', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hermetic-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('says a config with no builders defines none, naming the file and the field', async () => {
    const file = join(dir, 'empty.config.json');
    await writeFile(file, '{ "builders": {} }');
    await assert.rejects(loadConfig(file), (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(error.message, `${file}: builders: the config defines no builders; expected at least one`);
      return true;
    });
  });
});

describe('config: unpack limits', () => {
  it('gives every builder limits on what its source or snapshot may unpack to, which the config may change', () => {
    const { builders } = parseConfig(
      { builders: { plain: { type: 'command', command: 'make' }, big: { type: 'go-tree', unpackMaxBytes: 16 * 2 ** 30, unpackMaxEntries: 2_000_000 } } },
      'test.json',
    );
    assert.deepEqual(builders.get('plain')?.unpack, { maxBytes: 8 * 2 ** 30, maxEntries: 500_000 });
    assert.deepEqual(builders.get('big')?.unpack, { maxBytes: 16 * 2 ** 30, maxEntries: 2_000_000 });
    refused(`{ "builders": { "b": { "type": "command", "command": "make", "unpackMaxEntries": 10 } } }`, /^test\.json: builders\.b\.unpackMaxEntries: Too small: expected number to be >=1000$/);
  });
});
