import { type Dispatcher, EnvHttpProxyAgent, interceptors, request } from 'undici';
import { UserError } from './errors.js';

/**
 * HTTP(S) downloads, through the proxy the environment names (http_proxy, https_proxy, no_proxy, in
 * either case), as curl and apt do. Node's own fetch ignores those variables.
 */

let agent: Dispatcher | undefined;

export class HttpNotFound extends Error {
  constructor(readonly url: string) {
    super(`${url}: 404 Not Found`);
    this.name = 'HttpNotFound';
  }
}

/** The whole body of `url`; a 404 is HttpNotFound, anything else that fails is a UserError naming the URL. */
export async function httpGet(
  url: string,
  opts: { timeoutMs?: number; tries?: number } = {},
): Promise<Buffer> {
  if (!/^https?:\/\//.test(url)) throw new UserError(`${url}: only http:// and https:// URLs can be fetched`);
  agent ??= new EnvHttpProxyAgent().compose(interceptors.redirect({ maxRedirections: 5 }));
  const tries = opts.tries ?? 3;
  let lastError = '';
  for (let attempt = 1; attempt <= tries; attempt++) {
    try {
      const res = await request(url, {
        dispatcher: agent,
        headersTimeout: opts.timeoutMs ?? 60_000,
        bodyTimeout: opts.timeoutMs ?? 60_000,
      });
      if (res.statusCode === 404) {
        await res.body.dump();
        throw new HttpNotFound(url);
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        lastError = `HTTP ${res.statusCode}`;
        if (res.statusCode < 500) break;
        continue;
      }
      return Buffer.from(await res.body.arrayBuffer());
    } catch (e) {
      if (e instanceof HttpNotFound) throw e;
      lastError = (e as Error).message;
    }
  }
  throw new UserError(`could not download ${url}: ${lastError} (proxies: http_proxy, https_proxy, no_proxy)`);
}
