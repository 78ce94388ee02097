import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeManifest, uniqueChunkIds } from '../../../src/content/manifest.js';
import { silentLogger } from '../../../src/log.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { listAudit } from '../../../master/db/audit.js';
import { findVersion } from '../../../master/db/catalog.js';
import { getManifest } from '../../../master/db/manifests.js';
import { initMaster } from '../../../master/init.js';
import { collectMasterGarbage } from '../../../master/maintenance/gc.js';
import { startMaintenanceSchedule } from '../../../master/maintenance/schedule.js';
import { publish } from '../../../master/publish/publish.js';
import { unpublish } from '../../../master/publish/unpublish.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';

/** Bytes of every file under `dir` (what `du` would count, give or take blocks). */
function diskBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += statSync(join(e.parentPath ?? e.path, e.name)).size;
  }
  return n;
}

async function chunksOf(ctx: MasterContext, manifestId: string): Promise<string[]> {
  const bytes = await getManifest(ctx.db, manifestId);
  if (!bytes) throw new Error(`manifest ${manifestId} not stored`);
  return uniqueChunkIds(decodeManifest(bytes, { what: 'test manifest' }));
}

/** Every chunk is present and its bytes hash to its id. */
async function expectAllVerify(ctx: MasterContext, ids: string[]): Promise<void> {
  for (const id of ids) await expect(ctx.store.get(id, { verify: true })).resolves.toBeInstanceOf(Buffer);
}

describe('master gc: chunks no live version references are collected', () => {
  const tmp = tempDir('depotsync-master-gc-');
  let ctx: MasterContext;
  const file = (name: string, mib: number, seed: number) => {
    const p = join(tmp.dir, name);
    writeFileSync(p, pseudoRandomBytes(mib * 1024 * 1024, seed));
    return p;
  };

  beforeAll(async () => {
    await initMaster(join(tmp.dir, 'M'), { log: silentLogger() });
    ctx = await openMaster(join(tmp.dir, 'M'), silentLogger());
  });
  afterAll(async () => {
    await ctx?.close();
    tmp.cleanup();
  });

  it('keeps everything within the grace period, then shrinks the store to what live versions use', async () => {
    const keep = await publish(ctx, {
      name: 'keep',
      version: '1',
      path: file('keep.bin', 2, 11),
      actor: 'test',
    });
    await publish(ctx, { name: 'gone', version: '1', path: file('gone1.bin', 4, 12), actor: 'test' });
    await publish(ctx, { name: 'gone', version: '2', path: file('gone2.bin', 4, 13), actor: 'test' });
    const full = diskBytes(ctx.layout.storeDir);
    expect(full).toBeGreaterThan(10 * 1024 * 1024);

    await unpublish(ctx, 'gone@1', 'test');
    await unpublish(ctx, 'gone@2', 'test');
    // Default grace (hours): the removed versions were removed moments ago and their chunks stored
    // moments ago; a depot syncing the previous generation can still fetch them.
    const early = await collectMasterGarbage(ctx);
    expect(early.removed).toBe(0);
    expect(ctx.store.stats().bytes).toBe(10 * 1024 * 1024);

    const r = await collectMasterGarbage(ctx, { graceMs: 0 });
    expect(r.removed).toBeGreaterThan(100);
    expect(r.liveChunks).toBe((await chunksOf(ctx, keep.id)).length);
    const s = ctx.store.stats();
    expect(s.bytes).toBe(2 * 1024 * 1024);
    expect(s.deadBytes).toBe(0);
    expect(diskBytes(ctx.layout.storeDir)).toBeLessThan(full - 8 * 1024 * 1024);
    await expectAllVerify(ctx, await chunksOf(ctx, keep.id));
    expect((await listAudit(ctx.db, { action: 'store.gc' })).entries[0]).toMatchObject({
      actor: 'system',
      detail: { removed: r.removed },
    });
  });

  it('unpublishing everything then collecting leaves a store of near zero bytes', async () => {
    await unpublish(ctx, 'keep@1', 'test');
    const r = await collectMasterGarbage(ctx, { graceMs: 0 });
    expect(r.liveChunks).toBe(0);
    expect(ctx.store.stats()).toMatchObject({ chunks: 0, bytes: 0, deadBytes: 0 });
    // What is left is the index database (a few pages) and at most empty pack headers.
    expect(diskBytes(ctx.layout.storeDir)).toBeLessThan(1024 * 1024);
  });

  it('a publish in flight while gc runs keeps all its chunks', async () => {
    const path = file('inflight.bin', 8, 21);
    let gc: ReturnType<typeof collectMasterGarbage> | undefined;
    let committedAtGc: Promise<boolean> | undefined;
    const published = publish(ctx, {
      name: 'inflight',
      version: '1',
      path,
      actor: 'test',
      // GC starts once the first chunks are stored and before the version is committed: the live set it
      // reads does not name them, only the grace period protects them.
      onProgress: (done) => {
        if (done > 0 && !gc) {
          committedAtGc = findVersion(ctx.db, 'inflight', '1').then((v) => v !== undefined);
          gc = collectMasterGarbage(ctx, { graceMs: 60_000 });
        }
      },
    });
    const p = await published;
    expect(gc).toBeDefined();
    await gc;
    expect(await committedAtGc).toBe(false);
    await expectAllVerify(ctx, await chunksOf(ctx, p.id));
    expect(ctx.store.stats().bytes).toBe(8 * 1024 * 1024);
    // And once committed, a gc without grace keeps them too: now they are live.
    await collectMasterGarbage(ctx, { graceMs: 0 });
    await expectAllVerify(ctx, await chunksOf(ctx, p.id));
  });

  it('the schedule runs gc, counted from the last gc on record', async () => {
    const schedule = startMaintenanceSchedule(ctx, { intervalMs: 3_600_000, graceMs: 0 });
    expect(schedule).toBeDefined();
    const r = await schedule!.runNow();
    await schedule!.stop();
    expect(r?.gc.liveChunks).toBeGreaterThan(0);
    expect((await listAudit(ctx.db, { action: 'store.gc' })).entries[0]).toMatchObject({ actor: 'schedule' });
    expect(startMaintenanceSchedule(ctx, { intervalMs: 0 })).toBeUndefined();
  });
});
