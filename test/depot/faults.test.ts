import { describe, expect, it } from 'vitest';
import { fromSystemError, isDepotsyncError } from '../../src/errors.js';
import { certificateInfo } from '../../src/pki/cert-info.js';
import { generateKeyPair } from '../../src/tuf/keys.js';
import type { Depot, OpenDepotOptions } from '../../depot/depot.js';
import { cutAfter, DAY, randomBytesSeeded, resign, sha256, type Upstream } from './fixture.js';
import { expectServedComplete } from './helpers.js';
import { useUpstreamDepots } from '../helpers/upstream-depots.js';

describe('depot sync: bad input and faults (each leaves the served generation intact)', () => {
  let up: Upstream;
  let seed = 100;
  const depot = useUpstreamDepots((started) => (up = started));

  async function synced(opts: Partial<OpenDepotOptions> = {}): Promise<{ d: Depot; generation: number }> {
    await up.publish(`base${seed}`, '1.0', randomBytesSeeded(100_000, seed++));
    const d = depot(opts);
    const r = await d.engine.sync();
    return { d, generation: r.generation };
  }

  async function failure(d: Depot): Promise<Error> {
    const e = await d.engine.sync().then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(e, 'the sync should have failed').toBeInstanceOf(Error);
    return e!;
  }

  it('refuses a catalog signed by an unknown key', async () => {
    const { d, generation } = await synced();
    const attacker = generateKeyPair();
    const ts = up.files.get('timestamp.json')!;
    const snap = up.files.get(`${up.repo.generation}.snapshot.json`)!;
    const forgedSnap = resign(snap, [attacker], (s) => {
      s.version += 1;
    });
    const v = up.repo.generation + 1;
    up.files.set(`${v}.snapshot.json`, forgedSnap);
    up.files.set(
      'timestamp.json',
      resign(ts, [up.keys.timestamp], (s) => {
        s.version += 1;
        s.meta['snapshot.json'] = {
          version: v,
          length: forgedSnap.length,
          hashes: { sha256: sha256(forgedSnap) },
        };
      }),
    );
    try {
      const e = await failure(d);
      expect(isDepotsyncError(e, 'threshold-not-met') || isDepotsyncError(e, 'unknown-key')).toBe(true);
      expect(e.message).toContain('snapshot');
      expect(d.db.served()!.generation).toBe(generation);
    } finally {
      up.files.delete(`${v}.snapshot.json`);
      up.putFiles(up.repo.refresh()); // a real, newer timestamp
      up.files.set(
        'timestamp.json',
        Buffer.from(up.repo.currentFiles().find((f) => f.name === 'timestamp.json')!.bytes),
      );
    }
  });

  it('refuses an expired timestamp (freeze attack) and keeps serving', async () => {
    const { d, generation } = await synced();
    up.clock.advance(2 * DAY); // the master stopped re-signing
    const e = await failure(d);
    expect(isDepotsyncError(e, 'expired')).toBe(true);
    expect(e.message).toMatch(/timestamp metadata timestamp\.json: version \d+ expired/);
    expect(d.db.served()!.generation).toBe(generation);
    up.putFiles(up.repo.refresh());
    expect((await d.engine.sync()).generation).toBe(up.repo.generation);
  });

  it('refuses a timestamp older than the one it has (rollback)', async () => {
    const old = up.files.get('timestamp.json')!;
    const { d, generation } = await synced();
    const current = up.files.get('timestamp.json')!;
    up.files.set('timestamp.json', old);
    try {
      const e = await failure(d);
      expect(isDepotsyncError(e, 'version-rollback')).toBe(true);
      expect(d.db.served()!.generation).toBe(generation);
    } finally {
      up.files.set('timestamp.json', current);
    }
  });

  it('keeps serving when the master becomes unreachable mid-sync, and finishes on the next run', async () => {
    const { d, generation } = await synced({ sync: { attempts: 2 } });
    await up.publish('delta', '1.0', randomBytesSeeded(300_000, seed++));
    up.faults.batch = (_ids, res) => {
      up.faults.down = true;
      res.socket?.destroy();
      return true;
    };
    const e = await failure(d);
    expect(['network', 'truncated']).toContain((e as { code?: string }).code);
    expect(e.message).toMatch(/^sync from https:\/\/127\.0\.0\.1:\d+ failed: /);
    expect((e as { hint?: string }).hint).toContain(`the depot keeps serving generation ${generation}`);
    expect(d.db.served()!.generation).toBe(generation);
    expect(d.db.getKv('lastError')).toContain('failed');
    up.faults.down = false;
    up.faults.batch = undefined;
    const r = await d.engine.sync();
    expect(r.generation).toBe(up.repo.generation);
    await expectServedComplete(d);
  });

  it('resumes after the connection is cut in the middle of a batch: only the rest is fetched', async () => {
    const { d } = await synced({ sync: { attempts: 1, concurrency: 1 } });
    const p = await up.publish('echo', '1.0', randomBytesSeeded(400_000, seed++));
    up.faults.batch = cutAfter(up, 3);
    const e = await failure(d);
    expect(isDepotsyncError(e, 'truncated') || isDepotsyncError(e, 'network')).toBe(true);
    const stored = p.chunkIds.filter((id) => d.store.has(id));
    expect(stored.length).toBe(3);
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.chunksFetched).toBe(p.chunkIds.length - 3);
    const asked = up.requests.filter((q) => q.ids).flatMap((q) => q.ids!);
    for (const id of stored) expect(asked).not.toContain(id);
    await expectServedComplete(d);
  });

  it('retries a cut batch within the same sync, asking only for what is missing', async () => {
    const { d } = await synced({ sync: { attempts: 3, concurrency: 1 } });
    const p = await up.publish('foxtrot', '1.0', randomBytesSeeded(150_000, seed++));
    up.faults.batch = cutAfter(up, 2);
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.chunksFetched).toBe(p.chunkIds.length);
    const batches = up.requests.filter((q) => q.ids);
    expect(batches[1]!.ids).toEqual(batches[0]!.ids!.slice(2));
    await expectServedComplete(d);
  });

  it('fails clearly when the disk is full while storing; the served generation is intact', async () => {
    let puts = 0;
    let full = false;
    const { d, generation } = await synced({
      sync: { concurrency: 1 },
      wrapStore: (s) => ({
        missing: (ids) => s.missing(ids),
        putMany: async (chunks) => {
          if (full && ++puts > 1)
            throw fromSystemError(
              Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }),
              `chunk store ${s.root}`,
            );
          return s.putMany(chunks);
        },
      }),
    });
    await up.publish('golf', '1.0', randomBytesSeeded(500_000, seed++));
    full = true;
    const e = await failure(d);
    expect(isDepotsyncError(e, 'disk-full')).toBe(true);
    expect(e.message).toMatch(/no space left on device/);
    expect(d.db.served()!.generation).toBe(generation);
    await expectServedComplete(d);
    full = false;
    expect((await d.engine.sync()).generation).toBe(up.repo.generation);
    await expectServedComplete(d);
  });

  it('refuses to sync with a clear message when the master revoked the depot certificate', async () => {
    const { d, generation } = await synced();
    up.revoke([certificateInfo(d.creds.certPem).serial]);
    const e = await failure(d);
    expect(isDepotsyncError(e, 'forbidden')).toBe(true);
    expect(e.message).toMatch(/sync refused by upstream .*: revoked/);
    expect((e as { hint?: string }).hint).toMatch(/revoked by the master operator/);
    expect(d.db.served()!.generation).toBe(generation);
  });
});
