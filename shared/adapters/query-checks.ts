import type { Collection, Query, Scalar } from '../ports/state.ts';

/** Collection and indexed field names every adapter accepts: plain words, safe inside SQL and Firestore paths alike. */
const COLLECTION_NAME = /^[A-Za-z][A-Za-z0-9-]*$/;
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Throws an Error unless `name` is a collection name every adapter accepts. */
export function checkCollectionName(name: string): void {
  if (!COLLECTION_NAME.test(name)) throw new Error(`invalid collection name ${JSON.stringify(name)}`);
}

/** Throws an Error unless `field` is an indexed field name every adapter accepts, and not one `reserved` keeps for the adapter. */
export function checkIndexedField(collectionName: string, field: string, reserved?: (field: string) => boolean): void {
  if (!FIELD_NAME.test(field) || reserved?.(field) === true) {
    throw new Error(`invalid indexed field ${JSON.stringify(field)} in collection ${collectionName}`);
  }
}

/** Firestore's limit on the values of one `in`, which every adapter keeps so none accepts what Firestore refuses. */
const maxInValues = 30;

/**
 * Checks a query against the port's rules, the same in every adapter: `where` and `orderBy` fields indexed, an `in`
 * of 1 to 30 values, values strings, finite numbers or booleans, a direction of asc or desc, a positive whole limit.
 * Returns each `where`
 * field with its values (one for an equality). Throws an Error that names the collection, the field and the rule.
 */
export function checkQuery(collection: Collection<unknown>, query: Query): Array<[string, readonly Scalar[]]> {
  const where: Array<[string, readonly Scalar[]]> = [];
  for (const [field, condition] of Object.entries(query.where ?? {})) {
    assertIndexed(collection, field, 'where');
    const values = typeof condition === 'object' && condition !== null ? condition.in : [condition];
    if (values.length === 0 || values.length > maxInValues) {
      throw new Error(`query on ${collection.name}: 'in' on ${field} needs 1 to ${maxInValues} values, got ${values.length}`);
    }
    for (const value of values) assertScalar(collection, field, value);
    where.push([field, values]);
  }
  if (query.orderBy !== undefined) {
    const { field, direction } = query.orderBy;
    assertIndexed(collection, field, 'orderBy');
    if (direction !== 'asc' && direction !== 'desc') {
      throw new Error(`query on ${collection.name}: orderBy direction must be asc or desc, got ${String(direction)}`);
    }
  }
  if (query.limit !== undefined && (!Number.isSafeInteger(query.limit) || query.limit < 1)) {
    throw new Error(`query on ${collection.name}: limit must be a positive integer, got ${query.limit}`);
  }
  return where;
}

function assertIndexed(collection: Collection<unknown>, field: string, clause: string): void {
  if (!collection.indexed.includes(field)) {
    throw new Error(
      `query on ${collection.name}: ${clause} field ${JSON.stringify(field)} is not indexed ` +
        `(indexed: ${collection.indexed.join(', ') || 'none'})`,
    );
  }
}

function assertScalar(collection: Collection<unknown>, field: string, value: unknown): void {
  const ok = typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value));
  if (!ok) throw new Error(`query on ${collection.name}: ${field} must be compared with a string, finite number or boolean`);
}
