import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { parseStrictJson } from '../content/strict-json.js';
import { DepotsyncError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { BodyGuard } from './body-guard.js';
import { httpErrorFor, networkError } from './http-error.js';
import { bypassesProxy, proxyLabel, TunnelingAgent, type ProxySettings } from './proxy.js';
import { machineIdentityCheck, tlsBaseOptions } from './tls.js';
import { failsOver, UrlPicker, type UrlMemory } from './url-picker.js';

/**
 * The HTTPS client of depots and agents (mutual TLS to the master and to depots). The server must present
 * a certificate from the pinned CA (or from the organisation's CA of `listenerCaPem`, when given) that
 * names the host in the URL; this client never turns verification off. Through a proxy, TLS runs inside
 * a CONNECT tunnel (proxy.ts). Every body is capped and timed while it streams (TUF's endless-data and slow-retrieval attacks).
 * Plain `http://` is allowed too (the TUF conformance suite serves plain HTTP), with the same caps.
 */
export interface HttpClientOptions {
  baseUrl: string;
  /**
   * Equivalent servers after `baseUrl` (the masters of one catalog): a request that fails on the network,
   * in the TLS handshake, by timeout or with 502/503/504 goes to the next (url-picker.ts).
   */
  alternateUrls?: readonly string[] | undefined;
  /** After a failover, when to try `baseUrl` again (url-picker.ts PREFERRED_RETRY_MS). */
  retryPreferredMs?: number;
  /** Where the choice among several URLs is kept between processes. */
  urlMemory?: UrlMemory | undefined;
  /**
   * The master's CA certificate: the issuer trusted for the server (besides `listenerCaPem`) and for
   * machine identities. Required for https URLs.
   */
  caPem?: string;
  /**
   * The organisation's CA bundle (a `tls.caFile`), trusted for the server's certificate besides the
   * internal CA: for listeners with an operator-supplied certificate (docs/operations.md).
   */
  listenerCaPem?: string | undefined;
  /**
   * An HTTP proxy for https URLs (CONNECT tunnel; proxy.ts); NO_PROXY-exempt hosts connect directly.
   * Plain http:// URLs never use it.
   */
  proxy?: ProxySettings | undefined;
  /** This machine's certificate and key, for mutual TLS. */
  certPem?: string;
  keyPem?: string;
  /**
   * HTTPS: the server must also present the machine certificate of this depot (tls.ts machineIdentityCheck).
   */
  serverMachine?: { name: string; role: 'depot' };
  /** Connect, wait for headers, and longest silence on the socket. */
  timeoutMs?: number;
  /**
   * Slow-retrieval guard: fewer bytes than this per second over `rateWindowMs` fails with 'timeout'. 0 = off.
   */
  minBytesPerSecond?: number;
  rateWindowMs?: number;
  maxSockets?: number;
  /** Buffering of response streams (the socket's and the body's highWaterMark). */
  highWaterMarkBytes?: number;
  logger?: Logger;
}

export const HTTP_CLIENT_DEFAULTS = {
  timeoutMs: 30_000,
  minBytesPerSecond: 1024,
  rateWindowMs: 15_000,
  maxSockets: 8,
  highWaterMarkBytes: 1024 * 1024,
  /** Error bodies are read for their message only, so they get a small cap of their own. */
  errorBodyMaxBytes: 64 * 1024,
};

export interface StreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** Counted, capped and watched: errors with 'too-large', 'truncated' or 'timeout'. */
  body: Readable;
  /** HTTPS: the subject of the server certificate this response came over (verified against the CA). */
  peerSubject?: { commonName: string; organizationalUnit: string };
}

export interface RequestOptions {
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  /** Cap on the response body, counted while streaming. */
  maxBytes: number;
  /** Names the object in errors ("timestamp.json", "chunk batch"). */
  what?: string;
  signal?: AbortSignal;
}

function positiveInt(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new DepotsyncError(
      'bad-input',
      `HttpClient: ${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function parseBaseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new DepotsyncError(
      'bad-input',
      `HttpClient: baseUrl must be an http(s) URL, got ${JSON.stringify(text)}`,
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new DepotsyncError(
      'bad-input',
      `HttpClient: baseUrl must start with https:// or http://, got ${JSON.stringify(text)}`,
    );
  }
  if (url.search || url.hash || url.username) {
    throw new DepotsyncError(
      'bad-input',
      `HttpClient: baseUrl must not carry a query, fragment or user, got ${JSON.stringify(text)}`,
    );
  }
  return url;
}

export class HttpClient {
  /** Every server of this client, the preferred first (one unless `alternateUrls` were given). */
  private readonly bases: Map<string, URL>;
  /** Several equivalent servers: which one a request goes to. */
  private urlPicker: UrlPicker | undefined;
  private readonly retryPreferredMs: number | undefined;
  private readonly urlMemory: UrlMemory | undefined;
  /** One connection pool per server (origins differ in proxying and TLS sessions). */
  private agents = new Map<string, http.Agent>();
  private agentOptions: https.AgentOptions | undefined;
  private readonly proxySettings: ProxySettings | undefined;
  private readonly mod: typeof http | typeof https;
  private readonly log: Logger;
  private readonly o: typeof HTTP_CLIENT_DEFAULTS;
  /** The proxy https requests to the preferred server go through; undefined = direct. */
  readonly proxy: URL | undefined;
  /**
   * The server certificate's subject from the last full handshake per origin (for responses over
   * resumed sessions).
   */
  private lastPeerSubject = new Map<string, { commonName: string; organizationalUnit: string }>();

  /** The server requests go to now: the preferred one, or the last that answered after a failover. */
  get baseUrl(): URL {
    return this.bases.get(this.picker?.active ?? '') ?? this.bases.values().next().value!;
  }

  get picker(): UrlPicker | undefined {
    return this.urlPicker;
  }

  /**
   * More equivalent servers, tried after the present ones (URLs learnt from the signed depot directory).
   * Those of another scheme than the client's, or not parseable, are skipped.
   */
  addAlternateUrls(urls: readonly string[]): string[] {
    const protocol = this.baseUrl.protocol;
    const added: string[] = [];
    for (const u of urls) {
      if (this.bases.has(u)) continue;
      let url: URL;
      try {
        url = parseBaseUrl(u);
      } catch {
        continue;
      }
      if (url.protocol !== protocol || [...this.bases.values()].some((b) => b.href === url.href)) continue;
      this.bases.set(u, url);
      added.push(u);
    }
    if (added.length) {
      if (this.urlPicker) this.urlPicker.extend(added);
      else
        this.urlPicker = new UrlPicker({
          urls: [...this.bases.keys()],
          where: 'HttpClient',
          memory: this.urlMemory,
          ...(this.retryPreferredMs !== undefined ? { retryPreferredMs: this.retryPreferredMs } : {}),
        });
    }
    return added;
  }

  /** Every server URL of this client, in configured order. */
  get baseUrls(): string[] {
    return [...this.bases.keys()];
  }

  constructor(opts: HttpClientOptions) {
    const url = parseBaseUrl(opts.baseUrl);
    const all = [opts.baseUrl, ...(opts.alternateUrls ?? [])];
    this.bases = new Map(all.map((u) => [u, u === opts.baseUrl ? url : parseBaseUrl(u)]));
    if (this.bases.size !== all.length)
      throw new DepotsyncError('bad-input', `HttpClient: a URL is given twice in ${JSON.stringify(all)}`);
    if (new Set([...this.bases.values()].map((u) => u.protocol)).size > 1)
      throw new DepotsyncError(
        'bad-input',
        `HttpClient: mixed http and https URLs in ${JSON.stringify(all)}`,
      );
    this.retryPreferredMs = opts.retryPreferredMs;
    this.urlMemory = opts.urlMemory;
    this.urlPicker =
      all.length > 1
        ? new UrlPicker({
            urls: all,
            where: 'HttpClient',
            memory: opts.urlMemory,
            ...(opts.retryPreferredMs !== undefined ? { retryPreferredMs: opts.retryPreferredMs } : {}),
          })
        : undefined;
    if ((opts.certPem === undefined) !== (opts.keyPem === undefined)) {
      throw new DepotsyncError(
        'bad-input',
        'HttpClient: certPem and keyPem go together; got only one of them',
      );
    }
    this.o = {
      timeoutMs: positiveInt('timeoutMs', opts.timeoutMs ?? HTTP_CLIENT_DEFAULTS.timeoutMs, 1),
      minBytesPerSecond: positiveInt(
        'minBytesPerSecond',
        opts.minBytesPerSecond ?? HTTP_CLIENT_DEFAULTS.minBytesPerSecond,
        0,
      ),
      rateWindowMs: positiveInt('rateWindowMs', opts.rateWindowMs ?? HTTP_CLIENT_DEFAULTS.rateWindowMs, 1),
      maxSockets: positiveInt('maxSockets', opts.maxSockets ?? HTTP_CLIENT_DEFAULTS.maxSockets, 1),
      highWaterMarkBytes: positiveInt(
        'highWaterMarkBytes',
        opts.highWaterMarkBytes ?? HTTP_CLIENT_DEFAULTS.highWaterMarkBytes,
        1024,
      ),
      errorBodyMaxBytes: HTTP_CLIENT_DEFAULTS.errorBodyMaxBytes,
    };
    this.log = (opts.logger ?? silentLogger()).child({ component: 'net.client', base: url.origin });
    if (url.protocol === 'https:') {
      if (!opts.caPem) {
        throw new DepotsyncError('bad-input', `HttpClient: caPem is required for ${url.origin}`, {
          hint: 'pass the master CA certificate; the client trusts no other issuer',
        });
      }
      this.mod = https;
      this.agentOptions = {
        ...tlsBaseOptions(),
        keepAlive: true,
        maxSockets: this.o.maxSockets,
        ca: opts.listenerCaPem ? [opts.caPem, opts.listenerCaPem] : opts.caPem,
        cert: opts.certPem,
        key: opts.keyPem,
        // Verify the server against the pinned CA and the URL's host name, always.
        rejectUnauthorized: true,
        ...(opts.serverMachine
          ? {
              checkServerIdentity: machineIdentityCheck(opts.serverMachine.name, opts.serverMachine.role, {
                internalCaPem: opts.caPem,
              }),
            }
          : {}),
        highWaterMark: this.o.highWaterMarkBytes,
      } as https.AgentOptions;
      this.proxySettings = opts.proxy;
      this.proxy = this.proxyFor(url);
      if (this.proxy) this.log.debug({ proxy: proxyLabel(this.proxy) }, 'HTTPS through a proxy (CONNECT)');
    } else {
      this.mod = http;
      this.proxy = undefined;
    }
  }

  private proxyFor(url: URL): URL | undefined {
    const p = this.proxySettings;
    return p && !bypassesProxy(url.hostname, Number(url.port || 443), p.noProxy) ? p.url : undefined;
  }

  /**
   * The agent of one server: https direct, or through the proxy's CONNECT tunnels (same TLS options
   * either way); plain http.
   */
  private agentFor(base: URL): http.Agent {
    let agent = this.agents.get(base.origin);
    if (agent) return agent;
    const options = this.agentOptions;
    if (options) {
      const proxy = this.proxyFor(base);
      agent = proxy ? new TunnelingAgent(options, proxy, this.o.timeoutMs) : new https.Agent(options);
    } else {
      agent = new http.Agent({
        keepAlive: true,
        maxSockets: this.o.maxSockets,
        highWaterMark: this.o.highWaterMarkBytes,
      } as http.AgentOptions);
    }
    this.agents.set(base.origin, agent);
    return agent;
  }

  /** Close idle keep-alive connections. */
  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  /**
   * Present a new machine certificate from now on (after a renewal): new connections use it; the old
   * connections are closed (call it while no request of this client is in flight).
   */
  setCredentials(creds: { certPem: string; keyPem: string }): void {
    if (!this.agentOptions)
      throw new DepotsyncError(
        'bad-input',
        `HttpClient: ${this.baseUrl.origin} is not https; it has no client certificate to replace`,
      );
    this.agentOptions = { ...this.agentOptions, cert: creds.certPem, key: creds.keyPem };
    // New connections are made by new agents with the new certificate.
    this.close();
  }

  url(path: string): string {
    return this.urlAt(this.baseUrl, path);
  }

  private urlAt(base: URL, path: string): string {
    // Printable ASCII only: callers build paths from names in signed metadata, which are encoded by then.
    if (!/^\/[\x21-\x7e]*$/.test(path)) {
      throw new DepotsyncError(
        'bad-input',
        `HttpClient: path must start with '/' and be printable ASCII without spaces, got ${JSON.stringify(path)}`,
      );
    }
    return `${base.origin}${base.pathname.replace(/\/+$/, '')}${path}`;
  }

  async getBytes(
    path: string,
    opts: { maxBytes: number; what?: string; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Buffer> {
    const res = await this.request('GET', path, opts);
    return collect(res.body);
  }

  async getJson(
    path: string,
    opts: { maxBytes: number; what?: string; signal?: AbortSignal },
  ): Promise<unknown> {
    return parseJson(await this.getBytes(path, opts), `${opts.what ?? path}`, opts.maxBytes);
  }

  getStream(
    path: string,
    opts: { maxBytes: number; what?: string; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<StreamResponse> {
    return this.request('GET', path, opts);
  }

  async postJson(
    path: string,
    body: unknown,
    opts: { maxBytes: number; what?: string; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<unknown> {
    const res = await this.request('POST', path, {
      ...opts,
      headers: { 'content-type': 'application/json', accept: 'application/json', ...opts.headers },
      body: Buffer.from(JSON.stringify(body), 'utf8'),
    });
    const bytes = await collect(res.body);
    return bytes.length === 0 ? undefined : parseJson(bytes, opts.what ?? path, opts.maxBytes);
  }

  postStream(
    path: string,
    body: Readable | Buffer,
    headers: Record<string, string>,
    opts: { maxBytes: number; what?: string; signal?: AbortSignal },
  ): Promise<StreamResponse> {
    return this.request('POST', path, { ...opts, headers, body });
  }

  /**
   * One request; resolves once a 2xx response's headers arrive, with its body guarded. With several
   * servers, it goes to the next one when it fails before the headers (url-picker.ts failsOver); a
   * body that fails that way while streaming makes the next request start elsewhere.
   */
  request(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    opts: RequestOptions,
  ): Promise<StreamResponse> {
    const picker = this.picker;
    if (!picker) return this.requestAt(this.bases.keys().next().value!, method, path, opts);
    return picker.run(
      `${opts.what ? `${opts.what}: ` : ''}${method} ${path}`,
      (u) => this.requestAt(u, method, path, opts),
      { replayable: !(opts.body instanceof Readable), signal: opts.signal },
    );
  }

  private requestAt(
    key: string,
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    opts: RequestOptions,
  ): Promise<StreamResponse> {
    const base = this.bases.get(key)!;
    const url = this.urlAt(base, path);
    const label = `${opts.what ? `${opts.what}: ` : ''}${method} ${url}`;
    positiveInt(`maxBytes (${label})`, opts.maxBytes, 0);
    const started = Date.now();
    return new Promise<StreamResponse>((resolve, reject) => {
      let settled = false;
      let headerTimer: NodeJS.Timeout | undefined;
      let guard: BodyGuard | undefined;
      const fail = (e: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(headerTimer);
        // Do not leave the caller's upload stream hanging once the request is over.
        if (opts.body instanceof Readable && !opts.body.readableEnded) opts.body.destroy();
        reject(networkError(label, e));
      };
      const headers: Record<string, string> = { ...opts.headers };
      if (Buffer.isBuffer(opts.body)) headers['content-length'] = String(opts.body.length);
      const reqOptions: https.RequestOptions & { highWaterMark: number } = {
        method,
        agent: this.agentFor(base),
        headers,
        timeout: this.o.timeoutMs,
        // Passed on to tls.connect/net.connect: sets the socket's highWaterMark, which the response
        // (IncomingMessage) mirrors as its readableHighWaterMark (node 20 http docs).
        highWaterMark: this.o.highWaterMarkBytes,
        signal: opts.signal,
      };
      const req = this.mod.request(url, reqOptions);
      const timeoutError = (what: string) =>
        new DepotsyncError('timeout', `${label}: ${what} for ${this.o.timeoutMs} ms`, {
          hint: 'the server is slow or unreachable; try another depot',
        });
      // Socket idle timeout: no byte in either direction for timeoutMs (connect, headers or body).
      req.on('timeout', () => {
        // A socket paused because our reader is busy is not the server's silence; the
        // timer re-arms on the next byte.
        if (guard?.consumerBehind()) return;
        const e = timeoutError('no data');
        if (guard) guard.destroy(e); // report the stall, not the 'aborted' that destroying the socket causes
        req.destroy(e);
      });
      // Header deadline, started once the request is sent: blocks a server that trickles its headers.
      // The response can come before 'finish' (a server answering early; on Windows a write's completion
      // can trail the response): no deadline then, or the timer would hold the process for timeoutMs.
      let responded = false;
      req.on('finish', () => {
        if (responded || settled) return;
        headerTimer = setTimeout(() => req.destroy(timeoutError('no response headers')), this.o.timeoutMs);
      });
      req.on('error', fail);
      req.on('response', (res: IncomingMessage) => {
        responded = true;
        clearTimeout(headerTimer);
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) {
          readErrorBody(res, this.o.errorBodyMaxBytes).then(
            (body) => {
              fail(httpErrorFor(label, status, body));
              req.destroy();
            },
            (e) => fail(e),
          );
          return;
        }
        const cl = res.headers['content-length'];
        const declared = cl !== undefined && /^\d{1,15}$/.test(cl) ? Number(cl) : undefined;
        if (declared !== undefined && declared > opts.maxBytes) {
          // Refuse before reading a byte: the server announces more than this object may be.
          fail(
            new DepotsyncError(
              'too-large',
              `${label}: declared ${declared} bytes exceeds the limit of ${opts.maxBytes}`,
              { hint: 'the server sends more than this object may be; try another depot' },
            ),
          );
          req.destroy();
          return;
        }
        const g = new BodyGuard({
          label,
          maxBytes: opts.maxBytes,
          declaredBytes: declared,
          minBytesPerSecond: this.o.minBytesPerSecond,
          rateWindowMs: this.o.rateWindowMs,
          highWaterMark: this.o.highWaterMarkBytes,
        });
        guard = g;
        // The guard can fail on the first packet (more than maxBytes at once: endless data), which
        // emits 'error' on the next tick, before the caller's `await` resumes and starts reading. Without
        // a listener that error would crash the process; the reader still gets it (stream.errored).
        g.on('error', (e) => {
          if (failsOver(e)) this.picker?.failed(key);
        });
        res.on('error', (e) => g.destroy(isAbort(e) ? g.truncated(e) : networkError(label, e)));
        res.on('aborted', () => g.destroy(g.truncated()));
        g.on('close', () => {
          // The consumer stopped early or the guard failed: release the socket instead of draining it.
          if (!res.complete) req.destroy();
          this.log.debug(
            { method, url, status, bytes: g.bytes, ms: Date.now() - started },
            'response body done',
          );
        });
        res.pipe(g);
        settled = true;
        const cert =
          res.socket && 'getPeerCertificate' in res.socket
            ? (res.socket as TLSSocket).getPeerCertificate()
            : undefined;
        const subject = cert?.subject as { CN?: unknown; OU?: unknown } | undefined;
        const fresh =
          subject && typeof subject.CN === 'string'
            ? { commonName: subject.CN, organizationalUnit: typeof subject.OU === 'string' ? subject.OU : '' }
            : undefined;
        if (fresh) this.lastPeerSubject.set(base.origin, fresh);
        // A resumed TLS session presents no certificate: it resumes a session of this
        // origin, verified earlier.
        const peerSubject =
          fresh ??
          ((res.socket as TLSSocket | null)?.isSessionReused?.()
            ? this.lastPeerSubject.get(base.origin)
            : undefined);
        resolve({ status, headers: res.headers, body: g, ...(peerSubject ? { peerSubject } : {}) });
      });
      const body = opts.body;
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        body.on('error', (e) => req.destroy(e));
        body.pipe(req);
      }
    });
  }
}

function isAbort(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException;
  return err?.code === 'ECONNRESET' || err?.message === 'aborted';
}

async function collect(body: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    parts.push(chunk as Buffer);
    total += (chunk as Buffer).length;
  }
  return Buffer.concat(parts, total);
}

async function readErrorBody(res: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of res) {
      const b = chunk as Buffer;
      if (total + b.length > maxBytes) {
        parts.push(b.subarray(0, maxBytes - total));
        break;
      }
      parts.push(b);
      total += b.length;
    }
  } catch {
    // A cut error body still leaves the status to report.
  }
  return Buffer.concat(parts);
}

/** Response bodies are untrusted: the strict parser, capped again (the body guard caps while streaming). */
function parseJson(bytes: Buffer, what: string, maxBytes: number): unknown {
  return parseStrictJson(bytes, { what: `${what}: response`, maxBytes });
}
