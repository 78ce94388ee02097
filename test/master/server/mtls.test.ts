import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeManifest } from '../../../src/content/manifest.js';
import { tlsBaseOptions } from '../../../src/net/tls.js';
import { createCa, issueMachineCertificate, loadCa } from '../../../src/pki/ca.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { getManifest } from '../../../master/db/manifests.js';
import { byName, listMachines } from '../../../master/db/machines.js';
import { latestStatusAll, statusHistory } from '../../../master/db/status.js';
import { publish } from '../../../master/publish/publish.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';
import {
  bearer,
  call,
  enrollWithToken,
  startTestMaster,
  type MachineIdentity,
  type TestMaster,
} from './helpers.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const report = (sequence: number, extra: Record<string, unknown> = {}) => ({
  servedGeneration: 1,
  targetGeneration: 1,
  bytesFetched: 10,
  chunksFetched: 1,
  reportedAt: new Date().toISOString(),
  sequence,
  ...extra,
});

describe('master server: the mutual-TLS gate', () => {
  let m: TestMaster;
  let depot: MachineIdentity;
  const tmp = tempDir();

  beforeAll(async () => {
    m = await startTestMaster();
    depot = await enrollWithToken(m, 'depot-a');
  });
  afterAll(async () => {
    await m?.close();
    tmp.cleanup();
  });

  it('serves /healthz and root metadata without a certificate', async () => {
    expect((await call(m, '/healthz')).json()).toMatchObject({ status: 'ok', role: 'master' });
    expect((await call(m, '/v1/metadata/1.root.json')).status).toBe(200);
  });

  it('answers 401 to a client with no certificate', async () => {
    const r = await call(m, '/v1/metadata/timestamp.json');
    expect(r.status).toBe(401);
    expect(r.json().error).toMatchObject({ code: 'no-certificate' });
    expect(r.json().error.message).toMatch(/no client certificate/);
  });

  it('answers 401 to a certificate from another CA', async () => {
    const otherMaterial = createCa({ commonName: 'rogue CA' });
    const other = loadCa(otherMaterial.keyPem, otherMaterial.certPem);
    const { keyPem, csrPem } = createMachineKeyAndCsr({ machineName: 'depot-a', role: 'depot' });
    const cert = issueMachineCertificate(other, csrPem, { machineName: 'depot-a', role: 'depot' });
    const r = await call(m, '/v1/metadata/timestamp.json', { cert, key: keyPem });
    expect(r.status).toBe(401);
    expect(r.json().error).toMatchObject({ code: 'unknown-issuer' });
  });

  it('serves an approved machine', async () => {
    const r = await call(m, '/v1/metadata/timestamp.json', { cert: depot.cert, key: depot.keyPem });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString()).signed._type).toBe('timestamp');
    expect((await byName(m.ctx.db, 'depot-a'))?.lastSeen).toBeDefined();
  });

  it('answers 403 "expired" to an expired certificate', async () => {
    const { keyPem, csrPem } = createMachineKeyAndCsr({ machineName: 'depot-old', role: 'depot' });
    const day = 86_400_000;
    const cert = issueMachineCertificate(m.ctx.ca, csrPem, {
      machineName: 'depot-old',
      role: 'depot',
      notBefore: new Date(Date.now() - 10 * day),
      notAfter: new Date(Date.now() - day),
    });
    const r = await call(m, '/v1/metadata/timestamp.json', { cert, key: keyPem });
    expect(r.status).toBe(403);
    expect(r.json().error.code).toBe('expired');
    expect(r.json().error.message).toMatch(/expired/);
  });

  it('answers 401 to a CA-issued certificate the machine table does not know', async () => {
    const { keyPem, csrPem } = createMachineKeyAndCsr({ machineName: 'ghost', role: 'agent' });
    const cert = issueMachineCertificate(m.ctx.ca, csrPem, { machineName: 'ghost', role: 'agent' });
    const r = await call(m, '/v1/metadata/timestamp.json', { cert, key: keyPem });
    expect(r.status).toBe(401);
    expect(r.json().error).toMatchObject({ code: 'unknown-certificate' });
  });

  it('answers 403 "pending" to a machine still waiting for approval', async () => {
    const { keyPem, csrPem } = createMachineKeyAndCsr({ machineName: 'depot-p', role: 'depot' });
    const enrolled = await call(m, '/v1/enroll', { body: { name: 'depot-p', role: 'depot', csr: csrPem } });
    expect(enrolled.status).toBe(202);
    // A certificate for it exists (e.g. a restored database) but the machine is not approved.
    const cert = issueMachineCertificate(m.ctx.ca, csrPem, { machineName: 'depot-p', role: 'depot' });
    const r = await call(m, '/v1/metadata/timestamp.json', { cert, key: keyPem });
    expect(r.status).toBe(403);
    expect(r.json().error.code).toBe('pending');
    expect(r.json().error.message).toMatch(/pending approval/);
  });

  it('answers 403 "revoked" once an operator revokes the machine', async () => {
    const agent = await enrollWithToken(m, 'agent-r', 'agent');
    expect((await call(m, '/v1/revocations.json', { cert: agent.cert, key: agent.keyPem })).status).toBe(200);
    const rv = await call(m, '/v1/admin/machines/agent-r/revoke', {
      method: 'POST',
      headers: bearer(m.tokens.admin),
    });
    expect(rv.status).toBe(200);
    const r = await call(m, '/v1/metadata/timestamp.json', { cert: agent.cert, key: agent.keyPem });
    expect(r.status).toBe(403);
    expect(r.json().error.code).toBe('revoked');
    expect(r.json().error.message).toMatch(/revoked/);
    // ... and its serial is on the signed list depots enforce.
    const list = JSON.parse(
      (await call(m, '/v1/revocations.json', { cert: depot.cert, key: depot.keyPem })).body.toString(),
    );
    expect(list.signed.serials).toContain((await byName(m.ctx.db, 'agent-r'))?.certSerial);
  });

  it('refuses a machine blocked while its keep-alive connection is open, on its next request', async () => {
    const agentId = await enrollWithToken(m, 'agent-k', 'agent');
    const agent = new https.Agent({
      ...tlsBaseOptions(),
      keepAlive: true,
      maxSockets: 1,
      ca: m.ctx.ca.certPem,
      cert: agentId.cert,
      key: agentId.keyPem,
    });
    try {
      const first = await call(m, '/v1/metadata/timestamp.json', { agent });
      expect(first.status).toBe(200);
      const blocked = await call(m, '/v1/admin/machines/agent-k/block', {
        method: 'POST',
        headers: bearer(m.tokens.admin),
      });
      expect(blocked.status).toBe(200);
      const second = await call(m, '/v1/metadata/timestamp.json', { agent });
      expect(second.reusedSocket).toBe(true);
      expect(second.status).toBe(403);
      expect(second.json().error.code).toBe('blocked');
      expect(second.json().error.message).toMatch(/blocked/);
    } finally {
      agent.destroy();
    }
  });

  it('answers 416 to a Range beyond the end of a chunk, 206 to one inside it', async () => {
    const file = join(tmp.dir, 'small.bin');
    writeFileSync(file, pseudoRandomBytes(100_000, 3));
    const r = await publish(m.ctx, { name: 'small', version: '1', path: file, actor: 'test' });
    const id = decodeManifest((await getManifest(m.ctx.db, r.id))!).files[0]!.chunks[0]!.id;
    const beyond = await call(m, `/v1/chunks/${id}`, {
      cert: depot.cert,
      key: depot.keyPem,
      headers: { range: 'bytes=99999999-' },
    });
    expect(beyond.status).toBe(416);
    expect(beyond.headers['content-range']).toMatch(/^bytes \*\/\d+$/);
    const inside = await call(m, `/v1/chunks/${id}`, {
      cert: depot.cert,
      key: depot.keyPem,
      headers: { range: 'bytes=0-9' },
    });
    expect(inside.status).toBe(206);
    expect(inside.body.length).toBe(10);
  });

  it('files a status report under the machine the certificate names, not a name in the body', async () => {
    await enrollWithToken(m, 'depot-b');
    const r = await call(m, '/v1/status', {
      cert: depot.cert,
      key: depot.keyPem,
      body: report(1, { name: 'depot-b', machine: 'depot-b' }),
    });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ machine: 'depot-a', outcome: 'recorded' });
    expect(await statusHistory(m.ctx.db, 'depot-b')).toHaveLength(0);
    expect((await latestStatusAll(m.ctx.db)).map((s) => s.machine)).toEqual(['depot-a']);
    // A replay of the same sequence is stale, not recorded twice.
    const again = await call(m, '/v1/status', { cert: depot.cert, key: depot.keyPem, body: report(1) });
    expect(again.json().outcome).toBe('stale');
  });

  it('answers 413 to a status report over the size limit, and 403 to an agent reporting', async () => {
    const big = await call(m, '/v1/status', {
      cert: depot.cert,
      key: depot.keyPem,
      body: report(5, { lastError: 'x'.repeat(70 * 1024) }),
    });
    expect(big.status).toBe(413);
    const agent = await enrollWithToken(m, 'agent-s', 'agent');
    const r = await call(m, '/v1/status', { cert: agent.cert, key: agent.keyPem, body: report(1) });
    expect(r.status).toBe(403);
    expect((await listMachines(m.ctx.db, { role: 'agent' })).length).toBeGreaterThan(0);
  });

  it('answers 400 to a malformed status report, naming the field', async () => {
    const r = await call(m, '/v1/status', {
      cert: depot.cert,
      key: depot.keyPem,
      body: { ...report(9), servedGeneration: -1 },
    });
    expect(r.status).toBe(400);
    expect(r.json().error.message).toMatch(/servedGeneration/);
  });
});
