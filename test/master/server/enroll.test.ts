import https from 'node:https';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tlsBaseOptions } from '../../../src/net/tls.js';
import { certificateInfo } from '../../../src/pki/cert-info.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { decodeEnrollReply } from '../../../src/wire/enroll.js';
import { listAudit } from '../../../master/db/audit.js';
import { byName } from '../../../master/db/machines.js';
import { createEnrollmentToken } from '../../../master/db/tokens.js';
import { createMasterApp } from '../../../master/server/app.js';
import { bearer, call, startTestMaster, type TestMaster } from './helpers.js';

/** Flip one byte in the signature at the end of a CSR's DER: still parses, no longer verifies. */
function tamperCsr(pem: string): string {
  const b64 = pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const der = Buffer.from(b64, 'base64');
  der[der.length - 5] = (der[der.length - 5]! ^ 0x01) & 0xff;
  const lines = der
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${lines}\n-----END CERTIFICATE REQUEST-----\n`;
}

describe('master server: enrollment', () => {
  let m: TestMaster;
  // The rate limiters' clock: the flood test moves it forward instead of sleeping.
  let offsetMs = 0;
  /** When set, the master's clock stands still (no tokens earned back while a burst runs). */
  let frozenAtMs: number | undefined;

  beforeAll(async () => {
    m = await startTestMaster({
      config: { enrollPerAddressPerMinute: 50, hosts: ['localhost', '127.0.0.1', 'master.example.org'] },
      server: { app: { clockMs: () => (frozenAtMs ?? Date.now()) + offsetMs } },
    });
  });
  afterAll(async () => {
    await m?.close();
  });

  it('approves at once with a valid one-time token and returns the certificate and CA', async () => {
    const { keyPem, csrPem } = createMachineKeyAndCsr({
      machineName: 'depot-1',
      role: 'depot',
      dnsNames: ['depot-1.example'],
    });
    const created = await call(m, '/v1/admin/tokens', {
      headers: bearer(m.tokens.admin),
      body: { role: 'depot' },
    });
    expect(created.status).toBe(201);
    const r = await call(m, '/v1/enroll', {
      body: { name: 'depot-1', role: 'depot', csr: csrPem, token: created.json().token },
    });
    expect(r.status).toBe(200);
    const reply = decodeEnrollReply(r.json());
    expect(reply.state).toBe('approved');
    expect(reply.caCertificate).toBe(m.ctx.ca.certPem);
    const info = certificateInfo(reply.certificate!);
    expect(info.commonName).toBe('depot-1');
    expect(info.role).toBe('depot');
    expect(
      new X509Certificate(reply.certificate!).checkPrivateKey(
        (await import('node:crypto')).createPrivateKey(keyPem),
      ),
    ).toBe(true);
    expect(await byName(m.ctx.db, 'depot-1')).toMatchObject({ state: 'approved', certSerial: info.serial });
    // The poll id keeps answering with the certificate.
    const polled = await call(m, `/v1/enroll/${reply.request}`);
    expect(polled.status).toBe(200);
    expect(polled.json().certificate).toBe(reply.certificate);
    // The new certificate opens the mutual-TLS API.
    const ts = await call(m, '/v1/metadata/timestamp.json', { cert: reply.certificate!, key: keyPem });
    expect(ts.status).toBe(200);
  });

  it('keeps a request without token pending (202) until an operator approves it, then hands out the certificate', async () => {
    const { csrPem } = createMachineKeyAndCsr({ machineName: 'agent-1', role: 'agent' });
    const r = await call(m, '/v1/enroll', { body: { name: 'agent-1', role: 'agent', csr: csrPem } });
    expect(r.status).toBe(202);
    const reply = decodeEnrollReply(r.json());
    expect(reply.state).toBe('pending');
    expect(reply.certificate).toBeUndefined();
    expect((await call(m, `/v1/enroll/${reply.request}`)).status).toBe(202);
    const approved = await call(m, '/v1/admin/machines/agent-1/approve', {
      method: 'POST',
      headers: bearer(m.tokens.admin),
    });
    expect(approved.status).toBe(200);
    expect(approved.json().machine).toMatchObject({ name: 'agent-1', state: 'approved' });
    const polled = await call(m, `/v1/enroll/${reply.request}`);
    expect(polled.status).toBe(200);
    expect(certificateInfo(polled.json().certificate).commonName).toBe('agent-1');
    const audit = (await listAudit(m.ctx.db, { action: 'machine.approve', target: 'agent-1' })).entries[0];
    expect(audit).toMatchObject({ actor: 'op-admin', address: '127.0.0.1' });
  });

  it('answers 403 to a blocked machine polling its request', async () => {
    const { csrPem } = createMachineKeyAndCsr({ machineName: 'agent-b', role: 'agent' });
    const r = await call(m, '/v1/enroll', { body: { name: 'agent-b', role: 'agent', csr: csrPem } });
    await call(m, '/v1/admin/machines/agent-b/block', { method: 'POST', headers: bearer(m.tokens.admin) });
    const polled = await call(m, `/v1/enroll/${r.json().request}`);
    expect(polled.status).toBe(403);
    expect(polled.json().error.message).toMatch(/blocked/);
  });

  it('answers 403 to an unknown token and to a token already used, leaving no pending record', async () => {
    const { csrPem } = createMachineKeyAndCsr({ machineName: 'depot-2', role: 'depot' });
    const unknown = await call(m, '/v1/enroll', {
      body: { name: 'depot-2', role: 'depot', csr: csrPem, token: 'A'.repeat(43) },
    });
    expect(unknown.status).toBe(403);
    expect(unknown.json().error.message).toMatch(/enrollment token is not valid/);
    expect(await byName(m.ctx.db, 'depot-2')).toBeUndefined();

    const { token } = await createEnrollmentToken(m.ctx.db, { role: 'depot', createdBy: 'test' });
    expect(
      (await call(m, '/v1/enroll', { body: { name: 'depot-2', role: 'depot', csr: csrPem, token } })).status,
    ).toBe(200);
    const other = createMachineKeyAndCsr({ machineName: 'depot-3', role: 'depot' });
    const reused = await call(m, '/v1/enroll', {
      body: { name: 'depot-3', role: 'depot', csr: other.csrPem, token },
    });
    expect(reused.status).toBe(403);
    expect(reused.json().error.message).toMatch(/already used/);
    expect(await byName(m.ctx.db, 'depot-3')).toBeUndefined();
  });

  it('answers 403 to a token made for the other role', async () => {
    const { token } = await createEnrollmentToken(m.ctx.db, { role: 'agent', createdBy: 'test' });
    const { csrPem } = createMachineKeyAndCsr({ machineName: 'depot-4', role: 'depot' });
    const r = await call(m, '/v1/enroll', { body: { name: 'depot-4', role: 'depot', csr: csrPem, token } });
    expect(r.status).toBe(403);
    expect(r.json().error.message).toMatch(/for an agent/);
  });

  it('answers 400 to a CSR whose signature does not verify, and to one made for another name', async () => {
    const { csrPem } = createMachineKeyAndCsr({ machineName: 'depot-5', role: 'depot' });
    const bad = await call(m, '/v1/enroll', {
      body: { name: 'depot-5', role: 'depot', csr: tamperCsr(csrPem) },
    });
    expect(bad.status).toBe(400);
    expect(bad.json().error.message).toMatch(/signature does not verify/);
    const wrongName = await call(m, '/v1/enroll', { body: { name: 'depot-6', role: 'depot', csr: csrPem } });
    expect(wrongName.status).toBe(400);
    expect(wrongName.json().error.message).toMatch(/common name/);
  });

  it("answers 400 to a depot asking for the master's own host name", async () => {
    const { csrPem } = createMachineKeyAndCsr({
      machineName: 'depot-7',
      role: 'depot',
      dnsNames: ['master.example.org'],
    });
    const r = await call(m, '/v1/enroll', { body: { name: 'depot-7', role: 'depot', csr: csrPem } });
    expect(r.status).toBe(400);
    expect(r.json().error.message).toMatch(/master's own server name master\.example\.org/);
    // Loopback names are shared by every process on one machine (demo, tests) and stay allowed.
    const loop = createMachineKeyAndCsr({
      machineName: 'depot-8',
      role: 'depot',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    const ok = await call(m, '/v1/enroll', { body: { name: 'depot-8', role: 'depot', csr: loop.csrPem } });
    expect(ok.status).toBe(202);
  });

  it('answers 409 when a stranger enrolls under an approved machine name', async () => {
    const { csrPem } = createMachineKeyAndCsr({ machineName: 'depot-1', role: 'depot' });
    const r = await call(m, '/v1/enroll', { body: { name: 'depot-1', role: 'depot', csr: csrPem } });
    expect(r.status).toBe(409);
    expect(r.json().error.message).toMatch(/already enrolled/);
  });

  it('answers 400 to malformed requests, naming the field', async () => {
    const r = await call(m, '/v1/enroll', { body: { name: '../x', role: 'root', csr: 5 } });
    expect(r.status).toBe(400);
    expect(r.json().error.message).toMatch(/name.*role.*csr/);
    expect((await call(m, '/v1/enroll', { body: 'not json{' })).status).toBe(400);
    expect((await call(m, '/v1/enroll/not-a-request')).status).toBe(404);
  });

  it('counts one request as one token (the app takes the source address from an injectable function)', async () => {
    const app = createMasterApp({ ctx: m.ctx, addressOf: () => '192.0.2.7' });
    const limit = m.ctx.config.enrollPerAddressPerMinute;
    for (let i = 0; i < limit; i++) {
      expect((await app.request('/v1/enroll', { method: 'POST', body: '{' })).status).toBe(400);
    }
    const r = await app.request('/v1/enroll', { method: 'POST', body: '{' });
    expect(r.status).toBe(429);
    expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/from 192\.0\.2\.7/);
  });

  it('limits 1,000 enrollment requests from one address in a minute while another address is still served', async () => {
    const limit = m.ctx.config.enrollPerAddressPerMinute;
    const agent = new https.Agent({
      ...tlsBaseOptions(),
      keepAlive: true,
      maxSockets: 16,
      ca: m.ctx.ca.certPem,
    });
    const statuses: number[] = [];
    // Time stands still for the burst and the check after it: on a slow machine the bucket would
    // otherwise earn back a token (one per 1.2 s at 50 a minute) before the last request.
    frozenAtMs = Date.now();
    try {
      for (let batch = 0; batch < 1000 / 50; batch++) {
        const rs = await Promise.all(
          Array.from({ length: 50 }, () => call(m, `/v1/enroll/${'B'.repeat(43)}`, { agent })),
        );
        statuses.push(...rs.map((r) => r.status));
      }
    } finally {
      agent.destroy();
    }
    const served = statuses.filter((s) => s === 404).length;
    const limited = statuses.filter((s) => s === 429).length;
    // The tokens spent earlier in this file came from the same address: at most `limit` are served.
    expect(served).toBeLessThanOrEqual(limit);
    expect(limited).toBeGreaterThanOrEqual(1000 - limit);
    expect(served + limited).toBe(1000);
    const refused = await call(m, `/v1/enroll/${'B'.repeat(43)}`);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(refused.json().error.code).toBe('rate-limited');

    // Another source address (127.0.0.2 is loopback on Linux) is served meanwhile.
    const other = await call(m, `/v1/enroll/${'B'.repeat(43)}`, { localAddress: '127.0.0.2' });
    expect(other.status).toBe(404);
    // And the first address earns its budget back as the minute passes.
    offsetMs += 60_000;
    expect((await call(m, `/v1/enroll/${'B'.repeat(43)}`)).status).toBe(404);
    frozenAtMs = undefined;
  });
});
