import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeManifest } from '../../../src/content/manifest.js';
import { listAudit } from '../../../master/db/audit.js';
import { findVersion } from '../../../master/db/catalog.js';
import { createMasterApp } from '../../../master/server/app.js';
import { pseudoRandomBytes } from '../../helpers/tmp.js';
import {
  bearer,
  call,
  enrollWithToken,
  startTestMaster,
  type MachineIdentity,
  type TestMaster,
} from './helpers.js';

describe('master server: operator API', () => {
  let m: TestMaster;
  let depot: MachineIdentity;
  const MAX_UPLOAD = 4 * 1024 * 1024;

  beforeAll(async () => {
    m = await startTestMaster({ config: { maxUploadBytes: MAX_UPLOAD } });
    depot = await enrollWithToken(m, 'depot-x');
  });
  afterAll(async () => {
    await m?.close();
  });

  it('is a plain hono app: reads work through app.request() with a viewer token, without sockets', async () => {
    const app = createMasterApp({ ctx: m.ctx });
    const r = await app.request('/v1/admin/machines', { headers: bearer(m.tokens.viewer) });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { machines: Array<{ name: string; certPem?: string }> };
    expect(body.machines.map((x) => x.name)).toContain('depot-x');
    expect(body.machines[0]!.certPem).toBeUndefined();
    // Without a socket there is no certificate: the machine API answers 401, the admin API does not need one.
    expect((await app.request('/v1/metadata/timestamp.json')).status).toBe(401);
  });

  it('answers 401 without a bearer token or with an unknown one', async () => {
    const none = await call(m, '/v1/admin/machines');
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/Bearer/);
    const bad = await call(m, '/v1/admin/machines', { headers: bearer('x'.repeat(43)) });
    expect(bad.status).toBe(401);
    expect(bad.json().error.message).toMatch(/not valid/);
  });

  it('answers 403 naming the role needed when a viewer calls a mutating route', async () => {
    const block = await call(m, '/v1/admin/machines/depot-x/block', {
      method: 'POST',
      headers: bearer(m.tokens.viewer),
    });
    expect(block.status).toBe(403);
    expect(block.json().error.message).toBe(
      'operator op-viewer has role viewer; this action needs role admin',
    );
    const pub = await call(m, '/v1/admin/publish?name=a&version=1', {
      headers: bearer(m.tokens.viewer),
      body: Buffer.from('x'),
    });
    expect(pub.status).toBe(403);
    expect(pub.json().error.message).toMatch(/needs role publisher or admin/);
    const token = await call(m, '/v1/admin/tokens', {
      headers: bearer(m.tokens.publisher),
      body: { role: 'agent' },
    });
    expect(token.status).toBe(403);
    expect(
      (await call(m, '/v1/admin/machines?state=approved', { headers: bearer(m.tokens.viewer) })).json()
        .machines,
    ).toHaveLength(1);
  });

  it('publishes a streamed upload, and the metadata, target and chunks are then served to machines', async () => {
    const data = pseudoRandomBytes(1024 * 1024 + 123, 11);
    const r = await call(m, '/v1/admin/publish?name=tool&version=2.0&filename=tool-setup.exe', {
      headers: { ...bearer(m.tokens.publisher), 'content-type': 'application/octet-stream' },
      body: data,
    });
    expect(r.status).toBe(201);
    const result = r.json();
    expect(result).toMatchObject({ name: 'tool', version: '2.0', bytes: data.length, unchanged: false });
    expect(readdirSync(join(m.dir, 'uploads'))).toEqual([]);

    const as = { cert: depot.cert, key: depot.keyPem };
    const ts = JSON.parse((await call(m, '/v1/metadata/timestamp.json', as)).body.toString());
    expect(ts.signed.meta['snapshot.json'].version).toBe(result.generation);
    expect((await call(m, `/v1/metadata/${result.generation}.snapshot.json`, as)).status).toBe(200);

    const v = (await findVersion(m.ctx.db, 'tool', '2.0'))!;
    const target = await call(m, `/v1/targets/${v.manifestSha256}.${v.targetPath}`, as);
    expect(target.status).toBe(200);
    expect(createHash('sha256').update(target.body).digest('hex')).toBe(v.manifestSha256);
    // The same manifest under another package's name is not served (no mix-and-match by path).
    expect((await call(m, `/v1/targets/${v.manifestSha256}.other@2.0.json`, as)).status).toBe(404);

    const manifest = decodeManifest(target.body);
    expect(manifest.files.map((f) => f.path)).toEqual(['tool-setup.exe']);
    const parts: Buffer[] = [];
    for (const c of manifest.files[0]!.chunks) {
      const chunk = await call(m, `/v1/chunks/${c.id}`, as);
      expect(chunk.status).toBe(200);
      parts.push(chunk.body);
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);

    const audit = (await listAudit(m.ctx.db, { action: 'publish', target: 'tool@2.0' })).entries[0];
    expect(audit).toMatchObject({ actor: 'op-publisher', address: '127.0.0.1' });

    const listed = await call(m, '/v1/admin/packages', { headers: bearer(m.tokens.viewer) });
    expect(
      listed.json().packages.map((p: { name: string; version: string }) => `${p.name}@${p.version}`),
    ).toContain('tool@2.0');
  });

  it('refuses an upload over maxUploadBytes (413) and leaves no spooled file', async () => {
    const r = await call(m, '/v1/admin/publish?name=big&version=1', {
      headers: bearer(m.tokens.admin),
      body: Buffer.alloc(MAX_UPLOAD + 1),
    });
    expect(r.status).toBe(413);
    expect(existsSync(join(m.dir, 'uploads')) ? readdirSync(join(m.dir, 'uploads')) : []).toEqual([]);
    expect(await findVersion(m.ctx.db, 'big', '1')).toBeUndefined();
    // Without Content-Length the cap is counted while the body streams.
    const chunked = await call(m, '/v1/admin/publish?name=big&version=1', {
      headers: bearer(m.tokens.admin),
      body: Buffer.alloc(MAX_UPLOAD + 1),
      chunkedBytes: 256 * 1024,
    });
    expect(chunked.status).toBe(413);
    expect(chunked.json().error.message).toMatch(/exceeds the limit/);
    expect(readdirSync(join(m.dir, 'uploads'))).toEqual([]);
  });

  it('refuses a bad package name or file name before taking the upload', async () => {
    const name = await call(m, '/v1/admin/publish?name=..%2Fetc&version=1', {
      headers: bearer(m.tokens.admin),
      body: Buffer.from('x'),
    });
    expect(name.status).toBe(400);
    expect(name.json().error.message).toMatch(/package name/);
    const file = await call(m, '/v1/admin/publish?name=ok&version=1&filename=..%2Fx', {
      headers: bearer(m.tokens.admin),
      body: Buffer.from('x'),
    });
    expect(file.status).toBe(400);
  });

  it('unpublishes a version for a publisher, recording the operator', async () => {
    const r = await call(m, '/v1/admin/unpublish', {
      headers: bearer(m.tokens.publisher),
      body: { name: 'tool', version: '2.0' },
    });
    expect(r.status).toBe(200);
    expect(await findVersion(m.ctx.db, 'tool', '2.0')).toBeUndefined();
    expect((await listAudit(m.ctx.db, { action: 'unpublish' })).entries[0]).toMatchObject({
      actor: 'op-publisher',
    });
    const again = await call(m, '/v1/admin/unpublish', {
      headers: bearer(m.tokens.publisher),
      body: { name: 'tool', version: '2.0' },
    });
    expect(again.status).toBe(404);
  });

  it('makes enrollment tokens for an admin and shows depot status', async () => {
    const r = await call(m, '/v1/admin/tokens', {
      headers: bearer(m.tokens.admin),
      body: { role: 'agent', ttlMs: 60_000 },
    });
    expect(r.status).toBe(201);
    expect(r.json()).toMatchObject({ role: 'agent' });
    expect((await listAudit(m.ctx.db, { action: 'token.create' })).entries[0]).toMatchObject({
      actor: 'op-admin',
      address: '127.0.0.1',
    });
    const status = await call(m, '/v1/admin/status', { headers: bearer(m.tokens.viewer) });
    expect(status.status).toBe(200);
    const body = status.json();
    expect(body).toMatchObject({ generation: expect.any(Number), alerts: expect.any(Array) });
    // Every approved depot is listed; one that never reported says so.
    expect(body.depots.every((d: { name: string }) => typeof d.name === 'string')).toBe(true);
  });
});
