import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { HttpClient } from '../../../src/net/client.js';
import { NotifyListener } from '../../../depot/sync/notify-listener.js';
import { currentGeneration } from '../../../master/db/generations.js';
import { revokeMachine } from '../../../master/machines/actions.js';
import { requestSyncNow } from '../../../master/notify.js';
import { publish } from '../../../master/publish/publish.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';
import { call, enrollWithToken, startTestMaster, type MachineIdentity, type TestMaster } from './helpers.js';

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * The master's `GET /v1/events` over real mutual TLS on 127.0.0.1, heard by the depot's listener: a
 * publish (committed to the database, as `master publish` in another process would) and `master notify`
 * reach it within the poll interval; a revoked depot loses its stream and cannot open another.
 */
describe('master event stream (real mutual TLS)', () => {
  let m: TestMaster;
  let depotA: MachineIdentity;
  let depotB: MachineIdentity;
  const tmp = tempDir();
  const listeners: NotifyListener[] = [];

  async function listen(id: MachineIdentity) {
    const state = {
      served: await currentGeneration(m.ctx.db),
      syncs: 0,
      reasons: [] as string[],
      relayed: [] as unknown[],
    };
    const l: NotifyListener = new NotifyListener({
      client: () =>
        new HttpClient({
          baseUrl: m.server.url,
          caPem: m.ctx.ca.certPem,
          certPem: id.cert,
          keyPem: id.keyPem,
          timeoutMs: 5000,
          minBytesPerSecond: 0,
        }),
      origin: m.server.url,
      name: id.name,
      served: () => state.served,
      sync: async () => {
        state.syncs++;
        state.served = Math.max(state.served, l.announced ?? 0);
      },
      relay: (r) => state.relayed.push(r),
      config: { reconnectBaseMs: 20, reconnectMaxMs: 100, minGapMs: 0 },
      logger: silentLogger(),
    });
    listeners.push(l);
    l.start();
    return { l, state };
  }

  beforeAll(async () => {
    m = await startTestMaster({ server: { events: { pollMs: 20, heartbeatMs: 50 } } });
    depotA = await enrollWithToken(m, 'depot-a');
    depotB = await enrollWithToken(m, 'depot-b');
  });
  afterAll(async () => {
    await Promise.all(listeners.map((l) => l.stop()));
    await m?.close();
    tmp.cleanup();
  });

  it('refuses an events request without a client certificate (401, with the reason)', async () => {
    const r = await call(m, '/v1/events');
    expect(r.status).toBe(401);
    expect(r.json().error).toMatchObject({ code: 'no-certificate' });
  });

  it('announces a generation committed by a publish, and passes on master notify, to depots', async () => {
    const a = await listen(depotA);
    const b = await listen(depotB);
    await until('both connected', () => a.l.connected && b.l.connected && a.l.announced !== undefined);
    expect(a.l.announced).toBe(await currentGeneration(m.ctx.db));
    expect(a.state.syncs).toBe(0);

    const file = join(tmp.dir, 'app.bin');
    writeFileSync(file, pseudoRandomBytes(100_000, 3));
    const p = await publish(m.ctx, { name: 'app', version: '1.0', path: file, actor: 'test' });
    await until('the new generation announced and synced', () => a.state.syncs === 1 && b.state.syncs === 1);
    expect(a.l.announced).toBe(p.generation);

    // master notify, all depots, then one depot.
    await requestSyncNow(m.ctx.db, { actor: 'test' });
    await until('sync-now for all', () => a.state.syncs === 2 && b.state.syncs === 2);
    await requestSyncNow(m.ctx.db, { actor: 'test', depot: 'depot-b' });
    await until('sync-now for depot-b', () => b.state.syncs === 3);
    expect(a.state.syncs).toBe(2);
    // depot-a passes the request for depot-b on to its own children (it may be one of them).
    expect(a.state.relayed).toContainEqual({ seq: expect.any(Number), depot: 'depot-b' });
  });

  it('closes the stream of a depot revoked while connected, and refuses its new ones (403 revoked)', async () => {
    const b = listeners.find((l) => (l as unknown as { o: { name: string } }).o.name === 'depot-b')!;
    expect(b.connected).toBe(true);
    const before = b.connects;
    await revokeMachine(m.ctx, 'depot-b', { actor: 'test' });
    await until(
      'the stream closed and a reconnect refused',
      () => b.lastError !== undefined && /revoked/.test(b.lastError),
    );
    expect(b.lastError).toMatch(/refused by upstream .*: revoked/);
    expect(b.connects).toBe(before);
    const r = await call(m, '/v1/events', { cert: depotB.cert, key: depotB.keyPem });
    expect(r.status).toBe(403);
    expect(r.json().error.code).toBe('revoked');
  });
});
