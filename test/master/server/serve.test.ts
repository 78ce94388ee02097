import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findVersion } from '../../../master/db/catalog.js';
import type { DropOutcome } from '../../../master/dropbox/watcher.js';
import { applyDelta } from '../../../src/compress/zstd.js';
import { pseudoRandomBytes } from '../../helpers/tmp.js';
import { call, enrollWithToken, startTestMaster, type TestMaster } from './helpers.js';

describe('master serve: HTTPS server with drop folder and refresher', () => {
  let m: TestMaster;
  const outcomes: DropOutcome[] = [];
  let wake: (() => void) | undefined;

  beforeAll(async () => {
    m = await startTestMaster({
      server: {
        refresher: true,
        dropbox: {
          settleMs: 200,
          onOutcome: (o) => {
            outcomes.push(o);
            wake?.();
          },
        },
      },
    });
  });
  afterAll(async () => {
    await m?.close();
  });

  it('listens on 127.0.0.1 with TLS 1.2+ and reports its URL', async () => {
    expect(m.server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const r = await call(m, '/healthz');
    expect(r.json()).toMatchObject({ status: 'ok', generation: 1 });
    // Nothing was due at start: the refresher leaves a fresh catalog alone.
    expect(await m.server.refreshNow()).toMatchObject({ metadata: [] });
  });

  it('publishes a drop in M/dropbox and serves it to an enrolled depot', async () => {
    const dir = join(m.dir, 'dropbox', 'agent-setup', '7.0');
    mkdirSync(dir, { recursive: true });
    const data = pseudoRandomBytes(200_000, 4);
    writeFileSync(join(dir, 'setup.exe'), data);
    const deadline = Date.now() + 15_000;
    while (!outcomes.some((o) => o.key === 'agent-setup/7.0') && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 250).unref();
      });
    }
    expect(outcomes.find((o) => o.key === 'agent-setup/7.0')?.kind).toBe('published');
    const v = (await findVersion(m.ctx.db, 'agent-setup', '7.0'))!;
    const depot = await enrollWithToken(m, 'depot-s');
    const target = await call(m, `/v1/targets/${v.manifestSha256}.${v.targetPath}`, {
      cert: depot.cert,
      key: depot.keyPem,
    });
    expect(target.status).toBe(200);
    expect(JSON.parse(target.body.toString())).toMatchObject({ name: 'agent-setup', version: '7.0' });

    // The manifest as a delta against a manifest the caller holds (here the same one): a small zstd
    // frame that rebuilds it; a base the master does not serve is 404, a bad name 400.
    const name = `${v.manifestSha256}.${v.targetPath}`;
    const tls = { cert: depot.cert, key: depot.keyPem };
    const d = await call(m, `/v1/targets-delta/${name}/${name}`, tls);
    expect(d.status).toBe(200);
    expect(d.headers['content-type']).toBe('application/zstd');
    expect(d.headers['x-depotsync-delta-base']).toBe(name);
    expect(d.body.length).toBeLessThan(target.body.length / 4);
    expect(applyDelta(target.body, d.body, { maxBytes: target.body.length, exact: true })).toEqual(
      target.body,
    );
    const missing = await call(m, `/v1/targets-delta/${'0'.repeat(64)}.agent-setup@6.0.json/${name}`, tls);
    expect(missing.status).toBe(404);
    expect((await call(m, `/v1/targets-delta/..%2Fx/${name}`, tls)).status).toBe(400);
  });
});
