import * as functionsFramework from '@google-cloud/functions-framework';
import type { CloudEvent } from '@google-cloud/functions-framework';
import type { MessagePublishedData } from './pubsub-function.ts';
import { triggers, type Functions, type MessageFunctionName } from './functions.ts';

/**
 * Registers every function with functions-framework under its name (`poll`, `plan`, `launch`, `collect`, `report`
 * as CloudEvent functions, `dashboard` and `webhook` as HTTP functions). `load` builds them over a runtime's adapters; it runs
 * once, on the first invocation, so importing this module creates no client.
 */
export function registerFunctions(load: () => Promise<Functions>): void {
  let loaded: Promise<Functions> | undefined;
  const functions = () => (loaded ??= load());
  for (const name of Object.keys(triggers) as MessageFunctionName[]) {
    functionsFramework.cloudEvent<MessagePublishedData>(name, async (event: CloudEvent<MessagePublishedData>) => (await functions()).message[name](event));
  }
  functionsFramework.http('dashboard', async (req, res) => (await functions()).dashboard(req, res));
  functionsFramework.http('webhook', async (req, res) => (await functions()).webhook(req, res));
}
