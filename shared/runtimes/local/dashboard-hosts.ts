import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';

const wildcards = new Set(['0.0.0.0', '::']);

/**
 * The `Host` values a dashboard listening at `address` answers, as `URL.host` writes them: the loopback names and
 * addresses at its port, the address it listens on (every interface's, when that is a wildcard), and the host of
 * its public URL. A DNS-rebinding page on the web reaches it under its own name, which none of these is.
 */
export function dashboardHosts(address: AddressInfo, publicUrl: string): string[] {
  const listening = wildcards.has(address.address)
    ? Object.values(networkInterfaces()).flatMap((entries) => (entries ?? []).map((entry) => entry.address))
    : [address.address];
  const local = ['localhost', '127.0.0.1', '::1', ...listening].map(
    (name) => new URL(`http://${name.includes(':') ? `[${name}]` : name}:${address.port}`).host,
  );
  const published = URL.parse(publicUrl)?.host;
  return [...new Set(published === undefined ? local : [...local, published])];
}
