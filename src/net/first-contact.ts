import http from 'node:http';
import https from 'node:https';
import { DepotsyncError } from '../errors.js';
import { HttpClient } from './client.js';
import { checkUrlList, UrlPicker } from './url-picker.js';
import { httpErrorFor, networkError } from './http-error.js';
import { bypassesProxy, resolveProxy, TunnelingAgent } from './proxy.js';
import { tlsBaseOptions } from './tls.js';
import type { Root } from '@tufjs/models';
import { caFingerprintOf, normalizeFingerprint } from '../pki/enroll-reply.js';
import { checkMetadataFileName, type MetadataSource } from '../tuf/client.js';
import { caCertificateOfRoot } from '../tuf/root-ca.js';

/**
 * The first contact with the master, before a depot or an agent has the master's CA certificate.
 *
 * Trust argument. Until it knows the master's CA, the machine cannot authenticate the master's TLS
 * server, so exactly one thing is fetched over TLS WITHOUT server verification, and it is not trusted
 * because of the channel: `1.root.json`, accepted only if its SHA-256 equals the fingerprint the operator
 * gave (`--fingerprint`, printed by `master init`). Every later catalog byte chains to this root, and the
 * root also carries the master's CA certificate (src/tuf/root-ca.ts): the enrollment exchange (the CSR,
 * the one-time token, the certificate) then runs over TLS verified against that CA and the master's host
 * name. A machine in the middle with a CA of its own fails the handshake before the token is sent, and
 * could not put the machine under its CA either (the reply's CA must be the signed one). `--ca FILE` or
 * `--ca-fingerprint HEX` may still be given; they must name the same CA. A root that names no CA (a
 * master made before this check) needs `--ca FILE`.
 * After enrollment every connection uses mutual TLS with the CA pinned; verification is never off again.
 */
export interface FirstContact {
  get(path: string, maxBytes: number, what: string): Promise<{ status: number; body: Buffer }>;
  postJson(
    path: string,
    body: unknown,
    maxBytes: number,
    what: string,
  ): Promise<{ status: number; body: Buffer }>;
  close(): void;
}

/**
 * A verified client when the CA is known, else the unverified first contact (https only: plain http is
 * refused). Both answer 2xx responses with status and body, and throw HttpError (with the server's code)
 * otherwise.
 */
export function firstContact(
  masterUrls: string | readonly string[],
  caPem: string | undefined,
  timeoutMs = 30_000,
): FirstContact {
  const all = checkUrlList(typeof masterUrls === 'string' ? [masterUrls] : masterUrls, 'master URL');
  const baseUrl = all[0]!;
  // Enrollment runs before any configuration file exists: the proxy comes from HTTPS_PROXY / NO_PROXY.
  const proxy = resolveProxy('enrollment', { proxy: '', noProxy: '' });
  if (caPem !== undefined) {
    const client = new HttpClient({
      baseUrl,
      alternateUrls: all.slice(1),
      ...(caPem ? { caPem } : {}),
      timeoutMs,
      proxy,
    });
    const run = async (
      method: 'GET' | 'POST',
      path: string,
      body: unknown,
      maxBytes: number,
      what: string,
    ) => {
      const res = await client.request(method, path, {
        maxBytes,
        what,
        ...(body === undefined
          ? {}
          : { body: Buffer.from(JSON.stringify(body)), headers: { 'content-type': 'application/json' } }),
      });
      const parts: Buffer[] = [];
      for await (const p of res.body) parts.push(p as Buffer);
      return { status: res.status, body: Buffer.concat(parts) };
    };
    return {
      get: (path, maxBytes, what) => run('GET', path, undefined, maxBytes, what),
      postJson: (path, body, maxBytes, what) => run('POST', path, body, maxBytes, what),
      close: () => client.close(),
    };
  }
  const agentOptions = { ...tlsBaseOptions(), rejectUnauthorized: false, keepAlive: false };
  const direct = new https.Agent(agentOptions);
  const tunnel = proxy ? new TunnelingAgent(agentOptions, proxy.url, timeoutMs) : undefined;
  const picker = new UrlPicker({ urls: all, where: 'master URL' });
  const requestAt = (
    url: URL,
    method: 'GET' | 'POST',
    path: string,
    body: Buffer | undefined,
    maxBytes: number,
    what: string,
  ) =>
    new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      const label = `${what}: ${method} ${url.origin}${path}`;
      const agent =
        tunnel && proxy && !bypassesProxy(url.hostname, Number(url.port || 443), proxy.noProxy)
          ? tunnel
          : direct;
      const req = https.request(`${url.origin}${url.pathname.replace(/\/+$/, '')}${path}`, {
        method,
        agent,
        timeout: timeoutMs,
        headers: body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {},
      });
      req.on('timeout', () =>
        req.destroy(new DepotsyncError('timeout', `${label}: no data for ${timeoutMs} ms`)),
      );
      req.on('error', (e) => reject(networkError(label, e)));
      req.on('response', (res: http.IncomingMessage) => {
        const parts: Buffer[] = [];
        let n = 0;
        res.on('data', (d: Buffer) => {
          n += d.length;
          // Cap while streaming: the unverified peer gets no more memory than a valid answer needs.
          if (n > maxBytes)
            req.destroy(new DepotsyncError('too-large', `${label}: more than ${maxBytes} bytes`));
          else parts.push(d);
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const bytes = Buffer.concat(parts);
          if (status < 200 || status > 299) reject(httpErrorFor(label, status, bytes));
          else resolve({ status, body: bytes });
        });
        res.on('error', (e) => reject(networkError(label, e)));
      });
      req.end(body);
    });
  // Each URL's root is checked against the pinned fingerprint alike: failing over trusts nothing new.
  const request = (
    method: 'GET' | 'POST',
    path: string,
    body: Buffer | undefined,
    maxBytes: number,
    what: string,
  ) =>
    picker.run(`${what}: ${method} ${path}`, (u) =>
      requestAt(new URL(u), method, path, body, maxBytes, what),
    );
  return {
    get: (path, maxBytes, what) => request('GET', path, undefined, maxBytes, what),
    postJson: (path, body, maxBytes, what) =>
      request('POST', path, Buffer.from(JSON.stringify(body)), maxBytes, what),
    close: () => {
      direct.destroy();
      tunnel?.destroy();
    },
  };
}

/** Only root metadata through the first contact: its bytes are checked against the pinned fingerprint. */
export class FirstContactRootSource implements MetadataSource {
  constructor(private readonly contact: FirstContact) {}

  async fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    checkMetadataFileName(name);
    if (!/^\d+\.root\.json$/.test(name))
      throw new DepotsyncError(
        'internal',
        `first contact: only root metadata may be fetched before enrollment, not ${name}`,
      );
    return (await this.contact.get(`/v1/metadata/${name}`, maxBytes, `metadata ${name}`)).body;
  }
}

/**
 * The CA the enrollment talks TLS to: the one the verified root names (or, for a root that names none,
 * the operator's `--ca`). A `--ca` or `--ca-fingerprint` that names another CA is refused, and so is
 * enrolling with no authenticated CA at all: the token would go to whoever answers.
 */
export function enrollmentCa(
  root: Root,
  given: { caPem?: string | undefined; caFingerprint?: string | undefined },
  what: string,
): string {
  const ca = caCertificateOfRoot(root) ?? given.caPem;
  if (!ca) {
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: the master's root metadata (v${root.version}) names no CA certificate, and no --ca was given`,
      {
        hint: "copy the master's M/ca/ca-cert.pem and pass --ca FILE (a master made before this version does not sign its CA into its root)",
      },
    );
  }
  const fp = caFingerprintOf(ca);
  if (given.caPem !== undefined && caFingerprintOf(given.caPem) !== fp) {
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: the --ca certificate (SHA-256 ${caFingerprintOf(given.caPem)}) is not the CA the master's signed root names (${fp})`,
      {
        hint: 'copy the CA certificate from the master again',
      },
    );
  }
  if (given.caFingerprint !== undefined && normalizeFingerprint(given.caFingerprint) !== fp) {
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: --ca-fingerprint ${normalizeFingerprint(given.caFingerprint)} is not the CA the master's signed root names (${fp})`,
    );
  }
  return ca;
}
