import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyDelta } from '../../../src/compress/zstd.js';
import { chosenEntry, DeltaCache, deltaKey, parseEntry } from '../../../src/deltas/cache.js';
import { DeltaPool } from '../../../src/deltas/pool.js';
import { CachedZstdDeltas } from '../../../src/deltas/source.js';

const t1 = 'a1'.repeat(32);
const t2 = 'b2'.repeat(32);
const files = (dir: string) => readdirSync(dir).flatMap((d) => readdirSync(join(dir, d)));

describe('delta cache and pool (src/deltas)', () => {
  const root = mkdtempSync(join(tmpdir(), 'delta-cache-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('keeps an entry per (target, bases), records "does not pay off", and collects by liveness and size', async () => {
    const dir = join(root, 'a');
    const c = new DeltaCache({ dir, maxBytes: 0 });
    expect(await c.get(t1, ['x'])).toBeUndefined();
    await c.put(t1, ['x', 'y'], Buffer.from('frame-1'));
    await c.put(t1, ['z'], Buffer.alloc(0));
    await c.put(t2, ['x', 'y'], Buffer.alloc(3000, 1));
    expect((await c.get(t1, ['x', 'y']))!.toString()).toBe('frame-1');
    expect(await c.get(t1, ['y', 'x'])).toBeUndefined(); // other bases, another entry
    expect((await c.get(t1, ['z']))!.length).toBe(0);
    expect(files(dir).sort()).toEqual(
      [deltaKey(t1, ['x', 'y']), deltaKey(t1, ['z']), deltaKey(t2, ['x', 'y'])].sort(),
    );
    // A crash between write and rename leaves a temporary: removed once stale, never read as an entry.
    const stray = join(dir, 'a1', `${deltaKey(t1, ['q'])}.tmp-abc`);
    writeFileSync(stray, 'half');
    utimesSync(stray, new Date(Date.now() - 2 * 3_600_000), new Date(Date.now() - 2 * 3_600_000));
    expect(await c.get(t1, ['q'])).toBeUndefined();
    const r = await c.collect((target) => target !== t2);
    expect(r.removed).toBe(2); // t2's entry (no longer live) and the temporary
    expect(await c.get(t2, ['x', 'y'])).toBeUndefined();
    // Bounded: past maxBytes the oldest entries go.
    const small = new DeltaCache({ dir, maxBytes: 5 });
    utimesSync(join(dir, 'a1', deltaKey(t1, ['z'])), new Date(1000), new Date(1000));
    utimesSync(join(dir, 'a1', deltaKey(t1, ['x', 'y'])), new Date(1000), new Date(1000));
    await small.put(t1, ['n'], Buffer.from('abc'));
    await small.collect();
    expect(files(dir)).toEqual([deltaKey(t1, ['n'])]);
  });

  it('computes deltas on worker threads, refuses work past its queue, and a source keeps only deltas that pay off', async () => {
    const pool = new DeltaPool({ workers: 1, maxQueued: 1, nice: 19 });
    try {
      const base = Buffer.alloc(100_000);
      for (let i = 0; i < base.length; i++) base[i] = (i * 2654435761) >>> 24;
      const target = Buffer.concat([base.subarray(0, 50_000), Buffer.from('new'), base.subarray(50_000)]);
      const runs = [1, 2, 3].map(() => pool.run(base, target, 3));
      const [a, b, c] = await Promise.all(runs);
      expect(a && b).toBeTruthy();
      expect(c).toBeUndefined(); // one running, one queued, the third refused
      expect(a!.frame.length).toBeLessThan(200);
      expect(applyDelta(base, a!.frame, { maxBytes: target.length, exact: true }).equals(target)).toBe(true);
      const cache = new DeltaCache({ dir: join(root, 'b'), maxBytes: 0 });
      const source = new CachedZstdDeltas(cache, pool, 3);
      expect((await source.frame(t1, ['x'], target, base))!.length).toBeLessThan(200);
      // Random bytes: the delta does not beat the chunk compressed alone, so none is sent.
      const noise = Buffer.from(
        Array.from({ length: 20_000 }, (_, i) => (i * 7919 + ((i * i) >>> 3)) & 0xff),
      );
      expect(await source.frame(t2, ['x'], noise, base)).toBeUndefined();
      // A cached entry is served as it is; an empty one means "none".
      await cache.put(t2, ['x'], Buffer.alloc(0));
      expect(await source.frame(t2, ['x'], target, base)).toBeUndefined();
    } finally {
      await pool.close();
    }
  });
});

describe('delta cache entries against chosen bases', () => {
  it('round-trip their bases and frame; a plain frame stays a frame for the pair; damaged heads are nothing', async () => {
    const bases = ['a'.repeat(64), 'b'.repeat(64)];
    const frame = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]);
    expect(parseEntry(chosenEntry(bases, frame))).toEqual({ kind: 'chosen', bases, frame });
    expect(parseEntry(frame)).toEqual({ kind: 'pair', frame });
    expect(parseEntry(Buffer.alloc(0))).toBeUndefined();
    expect(parseEntry(chosenEntry(bases, frame).subarray(0, 40))).toBeUndefined();
    // A source serves a chosen entry only as kind 5: never as a frame against the pair's own bases.
    const dir = mkdtempSync(join(tmpdir(), 'depotsync-chosen-cache-'));
    const cache = new DeltaCache({ dir, maxBytes: 0 });
    const target = 'c'.repeat(64);
    await cache.put(target, ['d'.repeat(64)], chosenEntry(bases, frame));
    const source = new CachedZstdDeltas(cache, undefined);
    expect(
      await source.frame(target, ['d'.repeat(64)], Buffer.alloc(1000), Buffer.alloc(10)),
    ).toBeUndefined();
    expect(await source.chosen(target, ['d'.repeat(64)])).toEqual({ bases, frame });
    expect(await source.chosen(target, ['e'.repeat(64)])).toBeUndefined();
    rmSync(dir, { recursive: true, force: true });
  });
});
