import { closeSync, openSync, readdirSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChunkStore } from '../../../src/store/chunk-store.js';
import { RECORD_HEADER_BYTES } from '../../../src/store/pack-format.js';
import { capturingLogger, chunk, tempDir } from './helpers.js';

const packDir = (dir: string): string => join(dir, 'chunks-v1', 'packs');
const diskBytes = (dir: string): number =>
  readdirSync(packDir(dir)).reduce((n, f) => n + statSync(join(packDir(dir), f)).size, 0);

describe('ChunkStore.gc', () => {
  it('removes only dead chunks, compacts the pack, keeps live ones readable, and logs timed steps', async () => {
    const dir = tempDir();
    const { logger, lines } = capturingLogger();
    const store = ChunkStore.open(dir, { logger, gcGraceMs: 0 });
    const live = Array.from({ length: 20 }, () => chunk(3000));
    const dead = Array.from({ length: 30 }, () => chunk(3000));
    await store.putMany([...live.slice(0, 10), ...dead.slice(0, 15)]);
    await store.putMany([...dead.slice(15), ...live.slice(10)]);
    const before = diskBytes(dir);
    const liveIds = new Set(live.map((c) => c.id));

    const r = await store.gc((id) => liveIds.has(id));
    expect(r.removed).toBe(30);
    expect(r.packsCompacted).toBe(1);
    expect(r.bytesFreed).toBe(30 * (RECORD_HEADER_BYTES + 3000));
    expect(diskBytes(dir)).toBe(before - r.bytesFreed);
    expect(store.stats()).toMatchObject({ chunks: 20, bytes: 60_000, deadBytes: 0, packs: 1 });
    for (const c of live) expect((await store.get(c.id, { verify: true })).equals(c.data)).toBe(true);
    expect(store.missing(dead.map((c) => c.id))).toHaveLength(30);

    const steps = lines.filter((l) => typeof l.step === 'string').map((l) => l.step);
    expect(steps).toEqual(['mark', 'sweep', 'compact', 'orphans', 'checkpoint']);
    expect(lines.every((l) => l.component === 'store')).toBe(true);
    expect(lines.filter((l) => l.step).every((l) => typeof l.durationMs === 'number')).toBe(true);

    // Everything survives a reopen, and a second GC finds nothing to do.
    await store.close();
    const again = ChunkStore.open(dir, { gcGraceMs: 0 });
    expect(await again.gc((id) => liveIds.has(id))).toMatchObject({
      removed: 0,
      bytesFreed: 0,
      packsCompacted: 0,
    });
    for (const c of live) expect((await again.get(c.id)).equals(c.data)).toBe(true);
    await again.close();
  });

  it('deletes a pack with no live chunk outright, and leaves packs below the dead threshold alone', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir, { gcGraceMs: 0, maxPackBytes: 64 * 1024, compactDeadFraction: 0.5 });
    const allDead = Array.from({ length: 2 }, () => chunk(30_000)); // pack 1
    const mostlyLive = Array.from({ length: 2 }, () => chunk(30_000)); // pack 2, with one small dead chunk
    const deadInLive = chunk(1000);
    await store.putMany(allDead);
    await store.putMany([...mostlyLive, deadInLive]);
    await store.putMany([chunk(5000)]); // pack 3 (pack 2 is full)
    expect(store.stats().packs).toBe(3);
    const keep = new Set([...mostlyLive.map((c) => c.id)]);
    const r = await store.gc((id) => keep.has(id));
    expect(r).toMatchObject({ removed: 4, packsDeleted: 2, packsCompacted: 0 });
    expect(store.stats()).toMatchObject({ packs: 1, chunks: 2, deadBytes: RECORD_HEADER_BYTES + 1000 });
    for (const c of mostlyLive) expect((await store.get(c.id)).equals(c.data)).toBe(true);
    await store.close();
  });

  it('keeps unreferenced chunks younger than the grace period (a publish in flight), using the injected clock', async () => {
    let nowMs = 1_700_000_000_000;
    const store = ChunkStore.open(tempDir(), { gcGraceMs: 60 * 60 * 1000, now: () => nowMs });
    const old = chunk(100);
    await store.putMany([old]);
    nowMs += 2 * 60 * 60 * 1000;
    const fresh = chunk(100);
    await store.putMany([fresh]);
    expect((await store.gc(() => false)).removed).toBe(1);
    expect(store.has(old.id)).toBe(false);
    expect(store.has(fresh.id)).toBe(true);

    // Re-putting an existing chunk restarts its grace period.
    nowMs += 2 * 60 * 60 * 1000;
    await store.putMany([fresh]);
    expect((await store.gc(() => false)).removed).toBe(0);
    nowMs += 2 * 60 * 60 * 1000;
    expect((await store.gc(() => false)).removed).toBe(1);
    await store.close();
  });

  it('quarantines a live chunk that fails its hash during compaction instead of copying it', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir, { gcGraceMs: 0 });
    const good = chunk(2000);
    const damaged = chunk(2000);
    const dead = Array.from({ length: 5 }, () => chunk(2000));
    await store.putMany([good, damaged, ...dead]);
    const pack = join(packDir(dir), readdirSync(packDir(dir))[0]!);
    const fd = openSync(pack, 'r+');
    writeSync(
      fd,
      Buffer.from([0x42, 0x42]),
      0,
      2,
      8 + (RECORD_HEADER_BYTES + 2000) + RECORD_HEADER_BYTES + 500,
    );
    closeSync(fd);
    const r = await store.gc((id) => id === good.id || id === damaged.id);
    expect(r).toMatchObject({ removed: 5, quarantined: 1, packsCompacted: 1 });
    expect(store.has(damaged.id)).toBe(false);
    expect((await store.get(good.id)).equals(good.data)).toBe(true);
    expect(readdirSync(join(dir, 'chunks-v1', 'quarantine')).some((f) => f.startsWith(damaged.id))).toBe(
      true,
    );
    await store.close();
  });

  it('delete() drops chunks; their space comes back at the next gc', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir, { gcGraceMs: 0 });
    const cs = Array.from({ length: 4 }, () => chunk(5000));
    await store.putMany(cs);
    expect(await store.delete([cs[0]!.id, cs[1]!.id, chunk(1).id])).toEqual({ removed: 2, bytes: 10_000 });
    expect(store.stats()).toMatchObject({ chunks: 2, deadBytes: 2 * (RECORD_HEADER_BYTES + 5000) });
    const r = await store.gc(() => true);
    expect(r).toMatchObject({ removed: 0, packsCompacted: 1, bytesFreed: 2 * (RECORD_HEADER_BYTES + 5000) });
    expect(store.stats().deadBytes).toBe(0);
    await store.close();
  });
});
