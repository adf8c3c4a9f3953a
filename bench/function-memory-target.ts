// Not a script: functions-framework's own main loads this (`--source`) in each process bench/function-memory.ts
// starts, and serves the one function its `--target` names. It registers the functions as functions/main.ts does,
// over the same composition roots; only the clients differ, pointed at the bench's emulators and fakes, as
// HERMETIC_BENCH_CLIENTS describes them.
import { Firestore } from '@google-cloud/firestore';
import { PubSub } from '@google-cloud/pubsub';
import { Storage } from '@google-cloud/storage';
import { loadGoogleCloud, loadGoogleCloudDashboard } from '../shared/runtimes/google-cloud/google-cloud.ts';
import { registerFunctions } from '../functions/register.ts';
import type { GceClientOptions } from '../shared/adapters/gcp/gce-compute.ts';

/** Where the bench's emulators and fakes listen, and the credentials they take. */
export interface BenchClients {
  firestoreHost: string;
  pubsubHost: string;
  storageUrl: string;
  /** A service account key: the Storage client signs URLs with it, as the fake checks. */
  credentials: { client_email: string; private_key: string };
  /** The Compute Engine fake, and the Authorization header it wants. */
  compute: { port: number; authorization: string };
}

const settings = JSON.parse(process.env['HERMETIC_BENCH_CLIENTS'] ?? '') as BenchClients;
const projectId = process.env['HERMETIC_PROJECT'] ?? '';
// Each is made when a function first loads, as the real clients are: not at import.
const stores = () => ({
  firestore: new Firestore({ projectId, host: settings.firestoreHost, ssl: false, ignoreUndefinedProperties: true }),
  storage: new Storage({ apiEndpoint: settings.storageUrl, projectId, credentials: settings.credentials }),
});
const compute = {
  apiEndpoint: '127.0.0.1',
  port: settings.compute.port,
  protocol: 'http',
  authClient: {
    getRequestHeaders: async () => new Headers({ authorization: settings.compute.authorization }),
    fetch: (input: string | URL, init: RequestInit = {}) => {
      const headers = new Headers(init.headers);
      headers.set('authorization', settings.compute.authorization);
      return fetch(input, { ...init, headers });
    },
  },
} as unknown as GceClientOptions;

registerFunctions(
  async () => loadGoogleCloud(process.env, { clients: { ...stores(), pubsub: new PubSub({ projectId, apiEndpoint: settings.pubsubHost, emulatorMode: true }), compute } }),
  async () => loadGoogleCloudDashboard(process.env, { clients: stores() }),
);
