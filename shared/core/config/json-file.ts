import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { ConfigError, describeError } from '../errors.ts';
import { formatIssues } from '../model/messages.ts';

/**
 * Reads a JSON file of the checkout (a recipe, a machines table) and checks it against `schema`. Throws ConfigError
 * naming the file and what is wrong: unreadable, not JSON, or the field and what was expected.
 */
export async function readJsonFile<S extends z.ZodType>(file: string, schema: S): Promise<z.infer<S>> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(`${file}: ${describeError(error)}`, { cause: error });
  }
  refuseProtoKeys(json, file);
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new ConfigError(`${file}: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

/**
 * Throws ConfigError naming the first own `__proto__` key in parsed JSON. JSON.parse makes such a key an ordinary
 * property, but copying it into a plain object sets the copy's prototype instead, so the schema would drop it
 * without a word.
 */
export function refuseProtoKeys(json: unknown, file: string, path: readonly string[] = []): void {
  if (typeof json !== 'object' || json === null) return;
  for (const [key, value] of Object.entries(json)) {
    const at = [...path, key];
    if (key === '__proto__') throw new ConfigError(`${file}: ${at.join('.')}: "__proto__" is not allowed as a key`);
    refuseProtoKeys(value, file, at);
  }
}
