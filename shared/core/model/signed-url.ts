/**
 * How a signed upload URL tells its holder which headers to send. A V4 signed URL can sign request headers (GCS's
 * `x-goog-content-length-range` caps the size of an upload); the request must then carry them with exactly the
 * signed values. They ride in the URL's fragment, which HTTP clients never send, as `#name=value&name=value`, so a
 * URL stays one string in the task spec and a URL without a fragment (the embedded blob server's) means: no headers.
 * Only `x-goog-*` names are carried, so a URL can never make the agent send credentials or framing headers.
 */

const NAME = /^x-goog-[a-z0-9-]+$/;

/** The fragment that carries `headers`, with its `#`; empty when there are none. Throws on a name it cannot carry. */
export function headersFragment(headers: Record<string, string>): string {
  const names = Object.keys(headers);
  if (names.length === 0) return '';
  const params = new URLSearchParams();
  for (const name of names.sort()) {
    if (!NAME.test(name)) throw new Error(`a signed URL cannot carry header ${JSON.stringify(name)}`);
    params.set(name, headers[name] ?? '');
  }
  return `#${params.toString()}`;
}

/** The URL to request (without its fragment) and the headers it asks for; throws on a fragment that is not ours. */
export function signedRequest(url: string): { url: string; headers: Record<string, string> } {
  // Cut by hand: re-serializing through URL could re-encode a signed query.
  const hash = url.indexOf('#');
  const fragment = hash < 0 ? '' : url.slice(hash + 1);
  const headers: Record<string, string> = {};
  if (fragment !== '') {
    for (const [name, value] of new URLSearchParams(fragment)) {
      if (!NAME.test(name) || name in headers) throw new Error('signed URL has a malformed header fragment');
      headers[name] = value;
    }
  }
  return { url: hash < 0 ? url : url.slice(0, hash), headers };
}
