import https from 'node:https';
import type { AddressInfo } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpClient } from '../../../src/net/client.js';
import { peerIdentity, tlsServerOptions } from '../../../src/net/tls.js';
import {
  createCa,
  issueMachineCertificate,
  issueServerCertificate,
  loadCa,
  type Ca,
} from '../../../src/pki/ca.js';
import { certificateInfo } from '../../../src/pki/cert-info.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';

interface Creds {
  certPem: string;
  keyPem: string;
}

describe('TLS server options and peer identity (real TLS on 127.0.0.1)', () => {
  let ca: Ca;
  let otherCa: Ca;
  let agent: Creds;
  let expired: Creds;
  let foreign: Creds;
  let srv: Creds;
  let server: https.Server;
  let port = 0;
  let clock: () => Date = () => new Date();
  const clientErrors: string[] = [];

  beforeAll(async () => {
    const m = createCa({ commonName: 'test CA' });
    ca = loadCa(m.keyPem, m.certPem);
    const o = createCa({ commonName: 'foreign CA' });
    otherCa = loadCa(o.keyPem, o.certPem);
    const a = createMachineKeyAndCsr({ machineName: 'agent-1', role: 'agent' });
    agent = {
      keyPem: a.keyPem,
      certPem: issueMachineCertificate(ca, a.csrPem, { machineName: 'agent-1', role: 'agent' }),
    };
    expired = {
      keyPem: a.keyPem,
      certPem: issueMachineCertificate(ca, a.csrPem, {
        machineName: 'agent-1',
        role: 'agent',
        notBefore: new Date('2024-01-01T00:00:00Z'),
        notAfter: new Date('2024-06-01T00:00:00Z'),
      }),
    };
    foreign = {
      keyPem: a.keyPem,
      certPem: issueMachineCertificate(otherCa, a.csrPem, { machineName: 'agent-1', role: 'agent' }),
    };
    srv = issueServerCertificate(ca, {
      commonName: 'master',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    server = https.createServer(tlsServerOptions({ ...srv, caPem: ca.certPem }), (req, res) => {
      const socket = req.socket as TLSSocket;
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          peer: peerIdentity(socket, { now: clock }),
          protocol: socket.getProtocol(),
          cipher: socket.getCipher().name,
        }),
      );
    });
    server.on('tlsClientError', (e: NodeJS.ErrnoException) =>
      clientErrors.push(`${e.code ?? ''} ${e.message}`),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  async function ask(
    creds: Partial<Creds>,
    host = '127.0.0.1',
  ): Promise<{ peer: Record<string, unknown>; protocol: string; cipher: string }> {
    const client = new HttpClient({ baseUrl: `https://${host}:${port}`, caPem: ca.certPem, ...creds });
    try {
      return (await client.getJson('/whoami', { maxBytes: 4096 })) as {
        peer: Record<string, unknown>;
        protocol: string;
        cipher: string;
      };
    } finally {
      client.close();
    }
  }

  it('reports a valid machine certificate with serial, CN and role, over TLS 1.3 with an AEAD suite', async () => {
    const r = await ask(agent);
    const info = certificateInfo(agent.certPem);
    expect(r.peer).toMatchObject({
      kind: 'cert',
      serial: info.serial,
      commonName: 'agent-1',
      role: 'agent',
      fingerprint256: info.fingerprint256,
    });
    expect(r.peer.notAfter).toBe(info.notAfter.toISOString());
    expect(r.protocol).toBe('TLSv1.3');
    expect(r.cipher).toMatch(/GCM|CHACHA20/);
  });

  it('verifies the server by name as well as by IP address', async () => {
    expect((await ask(agent, 'localhost')).peer.kind).toBe('cert');
  });

  it('reports no certificate as kind none (the socket is not reset)', async () => {
    expect((await ask({})).peer).toEqual({ kind: 'none' });
  });

  it('reports a certificate from another CA as untrusted, with the reason', async () => {
    const r = await ask(foreign);
    expect(r.peer.kind).toBe('untrusted');
    expect(r.peer.reason).toMatch(/issuer unknown|UNABLE_TO/);
  });

  it('reports a certificate without clientAuth (a server certificate) as untrusted', async () => {
    const r = await ask(srv);
    expect(r.peer).toMatchObject({
      kind: 'untrusted',
      reason: 'certificate not for client authentication (INVALID_PURPOSE)',
    });
  });

  it('reports an expired certificate as expired (OpenSSL CERT_HAS_EXPIRED)', async () => {
    const r = await ask(expired);
    expect(r.peer).toMatchObject({
      kind: 'expired',
      commonName: 'agent-1',
      notAfter: '2024-06-01T00:00:00.000Z',
    });
  });

  it('checks expiry against the injected clock too', async () => {
    clock = () => new Date(Date.now() + 400 * 86_400_000);
    try {
      expect((await ask(agent)).peer.kind).toBe('expired');
    } finally {
      clock = () => new Date();
    }
  });

  it('the client refuses a server whose certificate does not name the host', async () => {
    const wrong = issueServerCertificate(ca, { commonName: 'elsewhere', dnsNames: ['elsewhere.example'] });
    const other = https.createServer(tlsServerOptions({ ...wrong, caPem: ca.certPem }), (_req, res) =>
      res.end('hi'),
    );
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    const client = new HttpClient({
      baseUrl: `https://127.0.0.1:${(other.address() as AddressInfo).port}`,
      caPem: ca.certPem,
      ...agent,
    });
    const err = await client.getBytes('/', { maxBytes: 10 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    client.close();
    await new Promise((r) => other.close(r));
    expect(err).toMatchObject({ code: 'bad-certificate' });
    expect((err as Error).message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it('the client refuses a server from another CA', async () => {
    const client = new HttpClient({ baseUrl: `https://127.0.0.1:${port}`, caPem: otherCa.certPem, ...agent });
    const err = await client.getBytes('/', { maxBytes: 10 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    client.close();
    expect(err).toMatchObject({ code: 'bad-certificate' });
    expect((err as Error).message).toMatch(/server certificate not trusted/);
  });

  function handshake(
    opts: tls.ConnectionOptions,
  ): Promise<{ ok: true; protocol: string | null; cipher: string } | { ok: false; error: string }> {
    return new Promise((resolve) => {
      const s = tls.connect(
        { host: '127.0.0.1', port, ca: ca.certPem, servername: 'localhost', ...opts },
        () => {
          resolve({ ok: true, protocol: s.getProtocol(), cipher: s.getCipher().name });
          s.end();
        },
      );
      s.on('error', (e: NodeJS.ErrnoException) =>
        resolve({ ok: false, error: `${e.code ?? ''} ${e.message}` }),
      );
    });
  }

  it('accepts TLS 1.2 with ECDHE and AES-GCM', async () => {
    const r = await handshake({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' });
    expect(r).toEqual({ ok: true, protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES128-GCM-SHA256' });
  });

  it('refuses a TLS 1.1 client', async () => {
    const before = clientErrors.length;
    const r = await handshake({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    expect(r.ok).toBe(false);
    // The refusal comes from the server (protocol version alert), not from the client's own settings.
    expect(clientErrors.slice(before).join('\n')).toMatch(/unsupported protocol|version/i);
  });

  it('refuses non-AEAD suites at TLS 1.2 (CBC with static RSA or with ECDHE)', async () => {
    for (const cipher of ['AES128-SHA256', 'ECDHE-RSA-AES128-SHA256', 'ECDHE-RSA-AES256-SHA']) {
      const before = clientErrors.length;
      const r = await handshake({ maxVersion: 'TLSv1.2', ciphers: cipher });
      expect(r.ok, cipher).toBe(false);
      expect(clientErrors.slice(before).join('\n')).toMatch(/no shared cipher|NO_SHARED_CIPHER/i);
    }
  });
});
