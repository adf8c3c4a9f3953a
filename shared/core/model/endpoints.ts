/** A host and TCP port a worker connects to. */
export interface Endpoint {
  host: string;
  port: number;
}

/** The distinct endpoints of http(s) URLs, in the order first seen; a URL that names no port has its scheme's. */
export function endpointsOf(urls: Iterable<string>): Endpoint[] {
  const seen = new Map<string, Endpoint>();
  for (const url of urls) {
    const parsed = new URL(url);
    const port = Number(parsed.port || (parsed.protocol === 'https:' ? 443 : 80));
    seen.set(`${parsed.hostname}:${port}`, { host: parsed.hostname, port });
  }
  return [...seen.values()];
}
