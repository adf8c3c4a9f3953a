import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseStorageFinalized, STORAGE_FINALIZED_TYPE, storageFinalizedEvent } from '../../shared/adapters/gcp/storage-event.ts';
import { PermanentError } from '../../shared/errors.ts';

describe('storage finalized events', () => {
  it('builds an event in Eventarc’s shape and parses its data', () => {
    const event = storageFinalizedEvent({
      bucket: 'hermetic-blobs',
      name: 'tasks/0123456789abcdef01234567/result.json',
      size: 812,
      generation: '1764612345678901',
      contentType: 'application/json',
    });
    assert.equal(event.type, STORAGE_FINALIZED_TYPE);
    assert.equal(event.source, '//storage.googleapis.com/projects/_/buckets/hermetic-blobs');
    assert.equal(event.subject, 'objects/tasks/0123456789abcdef01234567/result.json');
    // 64-bit fields are strings on the wire.
    assert.equal(event.data.size, '812');
    assert.equal(event.data.generation, '1764612345678901');
    assert.deepEqual(parseStorageFinalized(event.data), {
      bucket: 'hermetic-blobs',
      key: 'tasks/0123456789abcdef01234567/result.json',
      generation: '1764612345678901',
      size: 812,
    });
  });

  it('reads numbers where a tool sends them', () => {
    const { data } = storageFinalizedEvent({ bucket: 'b', name: 'k', size: 0, data: { size: 0, generation: 7 } });
    assert.deepEqual(parseStorageFinalized(data), { bucket: 'b', key: 'k', generation: '7', size: 0 });
  });

  it('throws a PermanentError naming every missing or malformed field', () => {
    const { data } = storageFinalizedEvent({ bucket: 'b', name: 'k', size: 1, data: { name: undefined, generation: undefined, size: '-1' } });
    assert.throws(
      () => parseStorageFinalized(data),
      (error: unknown) =>
        error instanceof PermanentError &&
        /name is missing/.test(error.message) &&
        /generation is missing/.test(error.message) &&
        /size is not a non-negative integer \("-1"\)/.test(error.message) &&
        !/bucket/.test(error.message),
    );
    assert.throws(() => parseStorageFinalized({ bucket: '', name: 'k', generation: '1', size: '1' }), /bucket is not a non-empty string/);
    assert.throws(() => parseStorageFinalized({ bucket: 'b', name: 'k', generation: '1', size: '99999999999999999' }), /size .* is too large/);
    assert.throws(() => parseStorageFinalized(null), PermanentError);
    assert.throws(() => parseStorageFinalized([]), /not an object/);
  });
});
