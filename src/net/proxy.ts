import http from 'node:http';
import https from 'node:https';
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { DepotsyncError } from '../errors.js';

/**
 * HTTP(S) proxies for depots and agents (docs/operations.md, "Proxies"). HTTPS goes through an HTTP
 * proxy as a CONNECT tunnel, so TLS, and with it mutual TLS, stays end to end: the proxy sees host and
 * port, never a byte of the exchange, and cannot present a certificate of its own.
 */
export interface ProxySettings {
  /** http://[user:password@]host:port of the proxy. */
  url: URL;
  /** NO_PROXY entries: '*', host names (a leading '.' or none: the domain and its subdomains), addresses, each with an optional :port. */
  noProxy: string[];
}

/**
 * The `proxy` setting of depot.json and agent.json: '' = the environment (HTTPS_PROXY / https_proxy),
 * 'direct' = never a proxy, else the proxy's URL. `noProxy` adds to NO_PROXY / no_proxy.
 */
export function resolveProxy(
  where: string,
  setting: { proxy: string; noProxy: string },
  env: NodeJS.ProcessEnv = process.env,
): ProxySettings | undefined {
  if (setting.proxy === 'direct') return undefined;
  const fromEnv = setting.proxy === '';
  const text = fromEnv ? (env.https_proxy ?? env.HTTPS_PROXY ?? '') : setting.proxy;
  if (text === '') return undefined;
  const url = parseProxyUrl(fromEnv ? 'HTTPS_PROXY' : `${where}: proxy`, text);
  const noProxy = [setting.noProxy, env.no_proxy ?? env.NO_PROXY ?? '']
    .flatMap((l) => l.split(/[\s,]+/))
    .map((e) => e.trim().toLowerCase())
    .filter((e) => e.length > 0);
  return { url, noProxy };
}

export function parseProxyUrl(where: string, text: string): URL {
  let url: URL;
  try {
    // "host:port" without a scheme is what many environments set.
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  } catch {
    throw new DepotsyncError('bad-input', `${where}: not a proxy URL: ${JSON.stringify(text)}`, {
      hint: 'give http://HOST:PORT',
    });
  }
  if (url.protocol !== 'http:')
    throw new DepotsyncError(
      'bad-input',
      `${where}: only http:// proxies are supported (HTTPS goes through them as a CONNECT tunnel), got ${url.protocol}//`,
      { hint: 'give http://HOST:PORT' },
    );
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash)
    throw new DepotsyncError(
      'bad-input',
      `${where}: a proxy URL has no path or query, got ${JSON.stringify(text)}`,
    );
  return url;
}

/** Check a `proxy` setting as a configuration file gives it. */
export function proxyOption(where: string, value: unknown): string {
  if (typeof value !== 'string')
    throw new DepotsyncError('bad-input', `${where}: proxy must be a string, got ${JSON.stringify(value)}`);
  if (value !== '' && value !== 'direct') parseProxyUrl(`${where}: proxy`, value);
  return value;
}

/** Does NO_PROXY exempt this host and port? */
export function bypassesProxy(host: string, port: number, noProxy: readonly string[]): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  for (const entry of noProxy) {
    if (entry === '*') return true;
    // A bare IPv6 address has colons of its own: "[::1]:443" carries a port, "::1" none.
    const bare6 = isIP(entry) === 6;
    const m = bare6
      ? [entry, entry, undefined]
      : /^(.*?)(?::(\d+))?$/.exec(entry.replace(/^\[|\](?=:|$)/g, ''))!;
    const [, name = '', p] = m;
    if (p !== undefined && Number(p) !== port) continue;
    if (isIP(h) || isIP(name)) {
      if (h === name) return true;
      continue;
    }
    const bare = name.replace(/^\*?\./, '');
    if (h === bare || h.endsWith(`.${bare}`)) return true;
  }
  return false;
}

/** The proxy's name in messages, without credentials. */
export function proxyLabel(url: URL): string {
  return `proxy ${url.protocol}//${url.host}`;
}

/**
 * An https.Agent whose connections are CONNECT tunnels through the proxy; TLS (with the agent's CA,
 * client certificate and server identity check) then runs inside the tunnel to the real server.
 */
export class TunnelingAgent extends https.Agent {
  constructor(
    options: https.AgentOptions,
    private readonly proxy: URL,
    private readonly connectTimeoutMs: number,
  ) {
    super(options);
  }

  override createConnection(
    requested: http.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): undefined {
    // What https.Agent hands here: the request's TLS options (CA, client certificate, servername...).
    const options = requested as tls.ConnectionOptions & { host?: string; port?: number | string };
    const target = `${(options.host ?? '').includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
    const label = proxyLabel(this.proxy);
    const headers: Record<string, string> = { host: target };
    if (this.proxy.username)
      headers['proxy-authorization'] =
        `Basic ${Buffer.from(`${decodeURIComponent(this.proxy.username)}:${decodeURIComponent(this.proxy.password)}`).toString('base64')}`;
    const req = http.request({
      host: this.proxy.hostname.replace(/^\[|\]$/g, ''),
      port: Number(this.proxy.port || 80),
      method: 'CONNECT',
      path: target,
      headers,
      agent: false,
    });
    let done = false;
    const finish = (err: Error | null, socket?: Duplex) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      callback?.(err, socket as Duplex);
    };
    // A timer of its own, not the socket's idle timeout: the socket lives on as the tunnel.
    const timer = setTimeout(
      () =>
        req.destroy(
          new DepotsyncError(
            'timeout',
            `${label}: no answer to CONNECT ${target} within ${this.connectTimeoutMs} ms`,
          ),
        ),
      this.connectTimeoutMs,
    );
    req.on('close', () => clearTimeout(timer));
    req.on('error', (e: NodeJS.ErrnoException) =>
      finish(
        e instanceof DepotsyncError
          ? e
          : new DepotsyncError(
              'network',
              `${label} unreachable for CONNECT ${target}: ${e.code ?? e.message}`,
              {
                hint: 'check the proxy setting (depot.json or agent.json `proxy`, or HTTPS_PROXY) and that the proxy runs',
                cause: e,
              },
            ),
      ),
    );
    req.on('connect', (res: http.IncomingMessage, socket: Socket, head: Buffer) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        finish(
          new DepotsyncError(
            'network',
            `${label} refused CONNECT ${target}: ${res.statusCode} ${res.statusMessage ?? ''}`.trim(),
            {
              hint: 'the proxy must allow CONNECT to this host and port (e.g. tinyproxy ConnectPort, squid SSL_ports); or list the host in noProxy',
            },
          ),
        );
        return;
      }
      if (head.length > 0) socket.unshift(head);
      const secure = tls.connect({ ...options, socket });
      finish(null, secure);
    });
    req.end();
    return undefined;
  }
}
