import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { ConfigError } from '../errors.ts';
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
    throw new ConfigError(`${file}: ${(error as Error).message}`, { cause: error });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new ConfigError(`${file}: ${formatIssues(parsed.error)}`);
  return parsed.data;
}
