import * as functionsFramework from '@google-cloud/functions-framework';
import type { CloudEvent } from '@google-cloud/functions-framework';
import type { MessagePublishedData } from '../shared/adapters/gcp/pubsub-function.ts';
import { triggers, type Functions, type MessageFunctionName } from '../shared/runtimes/google-cloud/functions.ts';

/**
 * Registers every function with functions-framework under its name (`poll`, `plan`, `launch`, `collect`, `report`
 * as CloudEvent functions, `dashboard` and `webhook` as HTTP functions). `load` builds them over a runtime's adapters;
 * `loadDashboard`, when given, builds the dashboard alone (it then needs nothing else `load` reads, such as GitHub's
 * credentials). Each loads on the first invocation that needs it, so importing this module creates no client; a load
 * that fails fails that invocation, and the next one tries again.
 */
export function registerFunctions(load: () => Promise<Functions>, loadDashboard?: () => Promise<Functions['dashboard']>): void {
  const functions = loadOnce(load);
  const dashboard = loadDashboard === undefined ? async () => (await functions()).dashboard : loadOnce(loadDashboard);
  for (const name of Object.keys(triggers) as MessageFunctionName[]) {
    functionsFramework.cloudEvent<MessagePublishedData>(name, async (event: CloudEvent<MessagePublishedData>) => (await functions()).message[name](event));
  }
  functionsFramework.http('dashboard', async (req, res) => (await dashboard())(req, res));
  functionsFramework.http('webhook', async (req, res) => (await functions()).webhook(req, res));
}

/**
 * `load`, run once and shared by every invocation while it runs and after it succeeds. A rejected load is forgotten:
 * an instance whose first load met a passing fault (or a secret not yet readable) recovers on its next invocation
 * instead of failing every one until it is replaced.
 */
export function loadOnce<T>(load: () => Promise<T>): () => Promise<T> {
  let loaded: Promise<T> | undefined;
  return () =>
    (loaded ??= load().catch((error: unknown) => {
      loaded = undefined;
      throw error;
    }));
}
