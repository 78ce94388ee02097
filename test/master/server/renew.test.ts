import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { HttpClient } from '../../../src/net/client.js';
import { certificateInfo, verifyIssuedBy } from '../../../src/pki/cert-info.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { renewIfDue } from '../../../src/net/renewal.js';
import { listAudit } from '../../../master/db/audit.js';
import { byName, certificatesOf } from '../../../master/db/machines.js';
import { blockMachine, revokeMachine } from '../../../master/machines/actions.js';
import { renewMachine } from '../../../master/machines/renew.js';
import { tempDir } from '../../helpers/tmp.js';
import { call, enrollWithToken, startTestMaster, type MachineIdentity, type TestMaster } from './helpers.js';

const cli = { actor: 'cli' };
const DAY = 86_400_000;

describe('master server: certificate renewal over mutual TLS (POST /v1/renew)', () => {
  let m: TestMaster;
  const tmp = tempDir();
  beforeAll(async () => {
    m = await startTestMaster();
  });
  afterAll(async () => {
    await m?.close();
    tmp.cleanup();
  });

  const renew = (id: MachineIdentity, csr: string, cert = id.cert, key = id.keyPem) =>
    call(m, '/v1/renew', { body: { csr }, cert, key });

  it('signs a CSR for a new key, records it, audits it, and keeps the old certificate valid', async () => {
    const d = await enrollWithToken(m, 'depot-r1');
    const next = createMachineKeyAndCsr({ machineName: 'depot-r1', role: 'depot', dnsNames: ['localhost'] });
    const r = await renew(d, next.csrPem);
    expect(r.status).toBe(200);
    const body = r.json();
    expect(body).toMatchObject({ machine: 'depot-r1', caCertificate: m.ctx.ca.certPem });
    const info = certificateInfo(body.certificate);
    expect(info).toMatchObject({ commonName: 'depot-r1', role: 'depot', serial: body.serial });
    expect(verifyIssuedBy(body.certificate, m.ctx.ca)).toBe(true);
    expect((await certificatesOf(m.ctx.db, 'depot-r1')).map((c) => c.serial).sort()).toEqual(
      [certificateInfo(d.cert).serial, body.serial].sort(),
    );
    expect(await byName(m.ctx.db, 'depot-r1')).toMatchObject({
      certSerial: body.serial,
      csrPem: next.csrPem,
      renewRequested: false,
    });
    expect(
      (await listAudit(m.ctx.db, { limit: 5 })).entries.find((e) => e.action === 'machine.renew'),
    ).toMatchObject({
      actor: 'machine:depot-r1',
      target: 'depot-r1',
      detail: { serial: body.serial, previous: certificateInfo(d.cert).serial },
    });
    // Both certificates speak for the machine until the old one expires.
    expect((await call(m, '/v1/renew', { cert: d.cert, key: d.keyPem })).status).toBe(200);
    expect((await call(m, '/v1/renew', { cert: body.certificate, key: next.keyPem })).json()).toMatchObject({
      serial: body.serial,
      renewRequested: false,
    });
  });

  it('`master renew` marks the machine; GET /v1/renew tells it; the renewal clears the mark', async () => {
    const a = await enrollWithToken(m, 'agent-r1', 'agent');
    expect((await call(m, '/v1/renew', { cert: a.cert, key: a.keyPem })).json()).toMatchObject({
      machine: 'agent-r1',
      renewRequested: false,
    });
    expect(await renewMachine(m.ctx, 'agent-r1', cli)).toMatchObject({
      renewRequested: true,
      certSerial: certificateInfo(a.cert).serial,
    });
    expect((await call(m, '/v1/renew', { cert: a.cert, key: a.keyPem })).json()).toMatchObject({
      renewRequested: true,
    });
    const r = await renew(a, createMachineKeyAndCsr({ machineName: 'agent-r1', role: 'agent' }).csrPem);
    expect(r.status).toBe(200);
    expect((await byName(m.ctx.db, 'agent-r1'))?.renewRequested).toBe(false);
    await expect(renewMachine(m.ctx, 'nobody', cli)).rejects.toThrow(/no machine named "nobody"/);
  });

  it('refuses a CSR for the same key, for another machine, or one that is not a CSR, with the reason', async () => {
    const d = await enrollWithToken(m, 'depot-r2');
    const same = await renew(d, d.csrPem);
    expect(same.status).toBe(400);
    expect(same.json().error.message).toMatch(/reuses the key of the current certificate/);
    const other = await renew(d, createMachineKeyAndCsr({ machineName: 'depot-r1', role: 'depot' }).csrPem);
    expect(other.status).toBe(400);
    expect(other.json().error.message).toMatch(/it is for depot-r1 \(depot\), not for the machine/);
    const role = await renew(d, createMachineKeyAndCsr({ machineName: 'depot-r2', role: 'agent' }).csrPem);
    expect(role.status).toBe(400);
    expect((await renew(d, 'hello')).json().error.code).toBe('bad-certificate');
    const junk = await call(m, '/v1/renew', {
      body: '{"csr":',
      cert: d.cert,
      key: d.keyPem,
      headers: { 'content-type': 'application/json' },
    });
    expect(junk.status).toBe(400);
    const big = await call(m, '/v1/renew', {
      body: { csr: 'x'.repeat(40 * 1024) },
      cert: d.cert,
      key: d.keyPem,
    });
    expect(big.status).toBe(413);
    expect(await certificatesOf(m.ctx.db, 'depot-r2')).toHaveLength(1);
  });

  it('refuses a blocked machine, a revoked one, and a caller without a certificate, clearly', async () => {
    const b = await enrollWithToken(m, 'depot-blocked');
    await blockMachine(m.ctx, 'depot-blocked', cli);
    const blocked = await renew(
      b,
      createMachineKeyAndCsr({ machineName: 'depot-blocked', role: 'depot' }).csrPem,
    );
    expect(blocked.status).toBe(403);
    expect(blocked.json().error).toMatchObject({ code: 'blocked' });
    await expect(renewMachine(m.ctx, 'depot-blocked', cli)).rejects.toThrow(
      /is blocked; only an approved machine/,
    );

    const v = await enrollWithToken(m, 'agent-revoked', 'agent');
    await revokeMachine(m.ctx, 'agent-revoked', cli);
    const revoked = await renew(
      v,
      createMachineKeyAndCsr({ machineName: 'agent-revoked', role: 'agent' }).csrPem,
    );
    expect(revoked.status).toBe(403);
    expect(revoked.json().error).toMatchObject({ code: 'revoked' });
    expect(await certificatesOf(m.ctx.db, 'agent-revoked')).toHaveLength(1);

    expect((await call(m, '/v1/renew', { body: { csr: 'x' } })).status).toBe(401);
  });

  it('the machine side: not due → asks the master; requested or due (injected clock) → renews and installs', async () => {
    const a = await enrollWithToken(m, 'agent-r2', 'agent');
    const files = { key: join(tmp.dir, 'agent-key.pem'), cert: join(tmp.dir, 'agent-cert.pem') };
    writeFileSync(files.key, a.keyPem, { mode: 0o600 });
    writeFileSync(files.cert, a.cert);
    const client = (certPem: string, keyPem: string) =>
      new HttpClient({ baseUrl: m.server.url, caPem: m.ctx.ca.certPem, certPem, keyPem });
    const opts = (certPem: string, keyPem: string, now: Date) => ({
      master: client(certPem, keyPem),
      name: 'agent-r2',
      role: 'agent' as const,
      files,
      certPem,
      caPem: m.ctx.ca.certPem,
      now,
      log: silentLogger(),
    });

    const issued = certificateInfo(a.cert);
    const quiet = await renewIfDue(opts(a.cert, a.keyPem, new Date(issued.notBefore.getTime() + DAY)));
    expect(quiet).toMatchObject({ renewed: false, reason: 'not-due' });

    await renewMachine(m.ctx, 'agent-r2', cli);
    const requested = await renewIfDue(opts(a.cert, a.keyPem, new Date(issued.notBefore.getTime() + DAY)));
    expect(requested).toMatchObject({ renewed: true, reason: 'requested' });
    if (!requested.renewed) throw new Error('not renewed');
    expect(readFileSync(files.cert, 'utf8')).toBe(requested.certPem);
    expect(readFileSync(files.key, 'utf8')).toBe(requested.keyPem);
    expect(await byName(m.ctx.db, 'agent-r2')).toMatchObject({
      certSerial: requested.serial,
      renewRequested: false,
    });

    const lifeMs =
      certificateInfo(requested.certPem).notAfter.getTime() -
      certificateInfo(requested.certPem).notBefore.getTime();
    const due = await renewIfDue(
      opts(
        requested.certPem,
        requested.keyPem,
        new Date(certificateInfo(requested.certPem).notBefore.getTime() + Math.ceil((lifeMs * 2) / 3) + 1000),
      ),
    );
    expect(due).toMatchObject({ renewed: true, reason: 'due' });
    expect(await certificatesOf(m.ctx.db, 'agent-r2')).toHaveLength(3);

    // Blocked: the machine gets one clear error naming the reason, and keeps its files.
    await blockMachine(m.ctx, 'agent-r2', cli);
    const before = readFileSync(files.cert, 'utf8');
    if (!due.renewed) throw new Error('not renewed');
    await expect(renewIfDue(opts(due.certPem, due.keyPem, new Date(Date.now() + 400 * DAY)))).rejects.toThrow(
      /certificate renewal of agent agent-r2 refused by https:\/\/127\.0\.0\.1:\d+: (blocked|expired)/,
    );
    await expect(renewIfDue(opts(due.certPem, due.keyPem, new Date()))).rejects.toThrow(
      /refused by .*: blocked/,
    );
    expect(readFileSync(files.cert, 'utf8')).toBe(before);
  });
});
