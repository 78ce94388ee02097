import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { addOperator } from '../../../master/db/operators.js';
import { currentGeneration } from '../../../master/db/catalog.js';
import { latestMetadata } from '../../../master/db/metadata.js';
import { migrateBackend } from '../../../master/db/migrate-backend.js';
import { joinMaster } from '../../../master/ha/join.js';
import { initMaster } from '../../../master/init.js';
import { publish } from '../../../master/publish/publish.js';
import { startMasterServer, type MasterServer } from '../../../master/server/serve.js';
import { startPostgres, type PgCluster } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/tmp.js';
import { bearer, call, type TestMaster } from '../server/helpers.js';

/**
 * Two `master serve` in one process on one PostgreSQL catalog: the one holding the signer lease
 * publishes, the other answers 503 naming it; status and metrics say who signs; once the signer stops,
 * the other takes over, and the former signer's context commits nothing (fencing).
 */
let cluster: PgCluster;
const tmp = tempDir('depotsync-serve-signer-');
const contexts: MasterContext[] = [];
const servers: MasterServer[] = [];
let token = '';

beforeAll(async () => {
  cluster = await startPostgres();
});
afterAll(async () => {
  for (const s of servers) await s.close().catch(() => undefined);
  for (const c of contexts) await c.close().catch(() => undefined);
  await cluster?.stop();
  tmp.cleanup();
});

function setTtl(dir: string, ms: number): void {
  const p = join(dir, 'master.json');
  writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), signerLeaseTtlMs: ms }));
}

async function until(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('master serve with the signer lease', () => {
  it('publishes on the signer only; the other answers 503 naming it; a stopped signer commits nothing', async () => {
    const M1 = join(tmp.dir, 'm1');
    const M2 = join(tmp.dir, 'm2');
    await initMaster(M1, { log: silentLogger(), name: 'm1' });
    await migrateBackend(M1, await cluster.createDatabase('signer'), { logger: silentLogger() });
    await joinMaster(M2, M1, { name: 'm2', log: silentLogger() });
    setTtl(M1, 3000);
    setTtl(M2, 3000);
    const [c1, c2] = [await openMaster(M1, silentLogger()), await openMaster(M2, silentLogger())];
    contexts.push(c1, c2);
    token = (await addOperator(c1.db, { name: 'op', role: 'admin', createdBy: 'test' })).token;
    const opts = { host: '127.0.0.1', port: 0, dropbox: false as const, refresher: false };
    const s1 = await startMasterServer(c1, opts);
    servers.push(s1);
    const s2 = await startMasterServer(c2, { ...opts, refresher: true });
    servers.push(s2);
    expect(s1.signing()).toBe(true);
    expect(s2.signing()).toBe(false);
    const [t1, t2] = [
      { ctx: c1, server: s1 },
      { ctx: c2, server: s2 },
    ] as unknown as TestMaster[];

    const upload = (m: TestMaster, version: string) =>
      call(m, `/v1/admin/publish?name=tool&version=${version}`, {
        headers: { ...bearer(token), 'content-type': 'application/octet-stream' },
        body: Buffer.alloc(50_000, Number(version)),
      });
    const refused = await upload(t2!, '1');
    expect(refused.status).toBe(503);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.json().error).toMatchObject({ code: 'not-signer', signer: 'm1' });
    expect(refused.json().error.message).toMatch(/master m2 is not the signer: master m1 signs now/);
    expect((await upload(t1!, '1')).status).toBe(201);

    // Who signs: the status API and the gauge on both.
    const status2 = (await call(t2!, '/v1/admin/status?packages=none', { headers: bearer(token) })).json();
    expect(status2.signer).toMatchObject({ self: 'm2', signer: 'm1', signing: false });
    expect(status2.generation).toBe(2);
    const gauge = async (s: MasterServer) =>
      (await s.admin.metrics.registry.metrics()).match(/^depotsync_master_signer (\d)$/m)?.[1];
    expect(await gauge(s1)).toBe('1');
    expect(await gauge(s2)).toBe('0');

    // The signer stops (its lease given up): the other signs within a renewal period, and signs a new
    // timestamp at once, with no publish.
    const timestampVersion = async () => (await latestMetadata(c2.db, 'timestamp'))!.version;
    const before = await timestampVersion();
    await s1.close();
    servers.splice(servers.indexOf(s1), 1);
    await until(() => s2.signing());
    await until(async () => (await timestampVersion()) > before);
    expect(await currentGeneration(c2.db)).toBe(2);
    expect((await upload(t2!, '2')).status).toBe(201);
    // The former signer's context keeps its fence: nothing it commits gets in.
    const err = await publish(c1, {
      name: 'tool',
      version: '3',
      path: join(M1, 'master.json'),
      actor: 'test',
    }).catch((e: unknown) => e);
    expect(isDepotsyncError(err, 'conflict')).toBe(true);
    expect((err as Error).message).toMatch(/master m1 is not the signer: master m2 signs now/);
    const status = (await call(t2!, '/v1/admin/status?packages=none', { headers: bearer(token) })).json();
    expect(status.generation).toBe(3);
    expect(status.signer).toMatchObject({ self: 'm2', signer: 'm2', signing: true });
  }, 60_000);
});
