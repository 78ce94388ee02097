import http from 'node:http';
import https from 'node:https';
import { DepotsyncError } from '../errors.js';
import { HttpClient } from './client.js';
import { requireHttpsUrl } from './https-url.js';
import { httpErrorFor, networkError } from './http-error.js';
import { tlsBaseOptions } from './tls.js';
import { checkMetadataFileName, type MetadataSource } from '../tuf/client.js';

/**
 * The first contact with the master, before a depot or an agent has the master's CA certificate.
 *
 * Trust argument. Until enrollment returns the CA certificate, the machine cannot authenticate the
 * master's TLS server, so exactly two things are fetched over TLS WITHOUT server verification, and
 * neither is trusted because of the channel:
 *  1. `1.root.json`: accepted only if its SHA-256 equals the fingerprint the operator gave
 *     (`--fingerprint`, printed by `master init`). Every later catalog byte chains to this root, so a
 *     machine in the middle can withhold updates but never make a depot serve, or an agent install,
 *     anything unsigned.
 *  2. the enrollment exchange (`POST /v1/enroll`, `GET /v1/enroll/{id}`): the CSR is public (it
 *     carries no secret: the private key never leaves the machine), and the reply is checked: the
 *     certificate must be for this machine's own key, name and role, and be issued by the CA
 *     certificate in the same reply. What the channel cannot prove is that this CA is the master's: a
 *     machine in the middle AT ENROLLMENT TIME could enroll it into its own CA (and learn a one-time
 *     token). It still cannot forge the catalog (1.), and the machine's status never reaches the real
 *     master, so the operator sees it as not enrolled. To close that gap, give the master's CA
 *     certificate copied out of band (`--ca FILE`) or its fingerprint (`--ca-fingerprint HEX`): then the
 *     first contact is verified like every later one.
 * After enrollment every connection uses mutual TLS with the CA pinned; verification is never off again.
 */
export interface FirstContact {
  get(path: string, maxBytes: number, what: string): Promise<{ status: number; body: Buffer }>;
  postJson(path: string, body: unknown, maxBytes: number, what: string): Promise<{ status: number; body: Buffer }>;
  close(): void;
}

/**
 * A verified client when the CA is known, else the unverified first contact (https only: plain http is
 * refused). Both answer 2xx responses with status and body, and throw HttpError (with the server's code)
 * otherwise.
 */
export function firstContact(baseUrl: string, caPem: string | undefined, timeoutMs = 30_000): FirstContact {
  const url = new URL(requireHttpsUrl(baseUrl, 'master URL', 'bad-input'));
  if (caPem !== undefined) {
    const client = new HttpClient({ baseUrl, ...(caPem ? { caPem } : {}), timeoutMs });
    const run = async (method: 'GET' | 'POST', path: string, body: unknown, maxBytes: number, what: string) => {
      const res = await client.request(method, path, {
        maxBytes,
        what,
        ...(body === undefined ? {} : { body: Buffer.from(JSON.stringify(body)), headers: { 'content-type': 'application/json' } }),
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
  const agent = new https.Agent({ ...tlsBaseOptions(), rejectUnauthorized: false, keepAlive: false });
  const request = (method: 'GET' | 'POST', path: string, body: Buffer | undefined, maxBytes: number, what: string) =>
    new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      const label = `${what}: ${method} ${url.origin}${path}`;
      const req = https.request(`${url.origin}${url.pathname.replace(/\/+$/, '')}${path}`, {
        method,
        agent,
        timeout: timeoutMs,
        headers: body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {},
      });
      req.on('timeout', () => req.destroy(new DepotsyncError('timeout', `${label}: no data for ${timeoutMs} ms`)));
      req.on('error', (e) => reject(networkError(label, e)));
      req.on('response', (res: http.IncomingMessage) => {
        const parts: Buffer[] = [];
        let n = 0;
        res.on('data', (d: Buffer) => {
          n += d.length;
          // Cap while streaming: the unverified peer gets no more memory than a valid answer needs.
          if (n > maxBytes) req.destroy(new DepotsyncError('too-large', `${label}: more than ${maxBytes} bytes`));
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
  return {
    get: (path, maxBytes, what) => request('GET', path, undefined, maxBytes, what),
    postJson: (path, body, maxBytes, what) => request('POST', path, Buffer.from(JSON.stringify(body)), maxBytes, what),
    close: () => agent.destroy(),
  };
}

/** Only root metadata through the first contact: its bytes are checked against the pinned fingerprint. */
export class FirstContactRootSource implements MetadataSource {
  constructor(private readonly contact: FirstContact) {}

  async fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    checkMetadataFileName(name);
    if (!/^\d+\.root\.json$/.test(name)) throw new DepotsyncError('internal', `first contact: only root metadata may be fetched before enrollment, not ${name}`);
    return (await this.contact.get(`/v1/metadata/${name}`, maxBytes, `metadata ${name}`)).body;
  }
}
