import type { Server } from 'node:http';
import { getTestServer } from '@google-cloud/functions-framework/testing';
import { listenForTests } from '../fakes/http.ts';

/** Starts functions-framework's own server for one registered function on a free port. */
export async function serve(name: string): Promise<{ url: string; server: Server }> {
  const server = getTestServer(name);
  return { url: `http://127.0.0.1:${await listenForTests(server)}`, server };
}
