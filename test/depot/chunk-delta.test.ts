import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../src/errors.js';
import { DELTA_CONTENT_TYPE, encodeDeltaRecord } from '../../src/wire/chunk-delta.js';
import { pairBases } from '../../depot/sync/chunk-delta.js';
import { randomBytesSeeded, type Published, type Upstream } from './fixture.js';
import { expectServedComplete } from './helpers.js';
import { useUpstreamDepots } from '../helpers/upstream-depots.js';

/** The concatenated bases of a pair, as the upstream holds them. */
async function baseOf(up: Upstream, p: { bases: string[] }): Promise<Buffer> {
  return Buffer.concat(await Promise.all(p.bases.map((b) => up.store.get(b))));
}

/**
 * A pair's bases are the window of old chunks around the new chunk's position; it holds the chunk
 * the new one replaces, and `offset` points at that chunk's start in the window.
 */
function expectWindowOf(
  old: ReadonlyArray<{ id: string; start: number }>,
  pair: { bases: string[]; offset: number },
  replaced: number,
): void {
  expect(pair.bases).toContain(old[replaced]!.id);
  const first = old.findIndex((o) => o.id === pair.bases[0]);
  expect(old[first]!.start + pair.offset).toBe(old[replaced]!.start);
}

/** Chunk lengths and start offsets of a published single-file package. */
function layout(p: Published): Array<{ id: string; start: number; length: number }> {
  let start = 0;
  return p.manifest.files[0]!.chunks.map((c) => {
    const out = { id: c.id, start, length: c.length };
    start += c.length;
    return out;
  });
}

describe('depot sync: chunk deltas against the chunks the depot already has', () => {
  let up: Upstream;
  const depot = useUpstreamDepots((started) => (up = started));

  /**
   * A package at version 1 synced to a fresh depot (no previous version: no delta request), then
   * version 2 with 100-byte edits at the start, in the middle and near the end of three chunks (chunk
   * boundaries unchanged, checked).
   */
  async function twoVersions(name: string, seed: number) {
    const data = randomBytesSeeded(400_000, seed);
    const v1 = await up.publish(name, '1', data);
    const d = depot();
    up.requests.length = 0;
    await d.engine.sync();
    expect(up.requests.filter((r) => r.path === '/v1/chunks/delta')).toEqual([]);
    const old = layout(v1);
    expect(old.length).toBeGreaterThan(8);
    const edits = [
      { chunk: 2, at: 0 },
      { chunk: 4, at: Math.floor(old[4]!.length / 2) },
      { chunk: 6, at: old[6]!.length - 300 },
    ];
    const v2data = Buffer.from(data);
    for (const [i, e] of edits.entries())
      randomBytesSeeded(100, seed * 10 + i).copy(v2data, old[e.chunk]!.start + e.at);
    const v2 = await up.publish(name, '2', v2data);
    const now = layout(v2);
    expect(now.map((c) => c.length)).toEqual(old.map((c) => c.length)); // the edits kept every boundary
    const changed = edits.map((e) => ({
      bases: [old[e.chunk]!.id],
      replaced: e.chunk,
      target: now[e.chunk]!.id,
      length: now[e.chunk]!.length,
    }));
    return { d, v1, v2, changed, old };
  }

  it('fetches each edited chunk as a delta against the chunk it replaces, verified, in a fraction of the bytes', async () => {
    const { d, changed, old } = await twoVersions('delta-a', 11);
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.switched).toBe(true);
    expect(r.chunksFetched).toBe(3);
    const asked = up.requests.filter((q) => q.path === '/v1/chunks/delta').flatMap((q) => q.pairs!);
    expect(asked.map((p) => p.target).sort()).toEqual(changed.map((c) => c.target).sort());
    for (const c of changed)
      expectWindowOf(
        old,
        asked.find((p) => p.target === c.target)!,
        c.replaced,
      );
    // Nothing left for whole-chunk batches.
    expect(up.requests.filter((q) => q.path === '/v1/chunks/batch')).toEqual([]);
    const whole = changed.reduce((s, c) => s + c.length, 0);
    expect(r.bytesByStep.deltas).toBeGreaterThan(300);
    expect(r.bytesByStep.deltas).toBeLessThan(3 * (100 + 53) + 200);
    expect(r.bytesByStep.deltas!).toBeLessThan(whole / 20);
    expect(r.bytesByStep.chunks).toBeUndefined();
    expect(r.bytesFetched).toBe(Object.values(r.bytesByStep).reduce((s, n) => s + n, 0));
    await expectServedComplete(d);
  });

  it('refuses tampered deltas (wrong middle byte, wrong lengths, lengths beyond the max chunk), stores none, and fetches those chunks whole', async () => {
    const { d, changed } = await twoVersions('delta-b', 12);
    const tampered: string[] = [];
    up.faults.delta = (pairs, res: ServerResponse) => {
      void (async () => {
        res.writeHead(200, { 'content-type': DELTA_CONTENT_TYPE });
        for (const [i, p] of pairs.entries()) {
          const rec = Buffer.concat(
            encodeDeltaRecord(p.target, await up.store.get(p.target), await baseOf(up, p), p.offset),
          );
          expect(rec[32]).toBe(2); // a delta
          if (i === 0) rec[rec.length - 1] ^= 0x01; // wrong middle byte
          if (i === 1) rec.writeUInt32BE(rec.readUInt32BE(33) + 1, 33); // prefix one longer: lengths do not add up
          if (i === 2) rec.writeUInt32BE(0x7fffffff, 49); // middle beyond the largest chunk
          tampered.push(p.target);
          res.write(rec);
        }
        res.end();
      })();
      return true;
    };
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(tampered.sort()).toEqual(changed.map((c) => c.target).sort());
    // All three came again whole, and only those.
    const batch = up.requests.filter((q) => q.path === '/v1/chunks/batch').flatMap((q) => q.ids!);
    expect(batch.sort()).toEqual(changed.map((c) => c.target).sort());
    expect(r.chunksFetched).toBe(3);
    expect(r.switched).toBe(true);
    await expectServedComplete(d); // every stored chunk re-hashes to its id
  });

  it('when the upstream serves damaged bytes both ways, fails clearly, stores nothing and keeps serving', async () => {
    const { d, changed } = await twoVersions('delta-c', 13);
    const before = d.db.served()!.generation;
    const bad = changed[1]!.target;
    up.faults.corrupt.add(bad);
    const err = await d.engine.sync().catch((e: unknown) => e);
    expect(isDepotsyncError(err, 'hash-mismatch')).toBe(true);
    expect((err as Error).message).toContain(bad);
    expect(d.store.has(bad)).toBe(false);
    expect(d.db.served()!.generation).toBe(before);
    // The next sync (upstream repaired) asks for the one chunk still missing.
    up.faults.corrupt.clear();
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.chunksFetched).toBe(1);
    expect(
      up.requests.filter((q) => q.path === '/v1/chunks/delta').flatMap((q) => q.pairs!.map((p) => p.target)),
    ).toEqual([bad]);
    await expectServedComplete(d);
  });

  it('gets the whole chunk when the upstream lacks the base', async () => {
    const { d, changed } = await twoVersions('delta-d', 14);
    const gone = changed[0]!;
    const base = gone.bases[0]!;
    const kept = await up.store.get(base);
    await up.store.delete([base]);
    up.requests.length = 0;
    const r = await d.engine.sync().finally(() => up.store.put(base, kept)); // other tests' depots need it
    expect(r.chunksFetched).toBe(3);
    expect(up.requests.filter((q) => q.path === '/v1/chunks/batch')).toEqual([]);
    // Whole chunks (record header included) for the pairs whose window holds the missing base, small
    // deltas for the others.
    const asked = up.requests.filter((q) => q.path === '/v1/chunks/delta').flatMap((q) => q.pairs!);
    const whole = changed.filter((c) => asked.find((p) => p.target === c.target)!.bases.includes(base));
    expect(whole.map((c) => c.target)).toContain(gone.target);
    const wholeBytes = whole.reduce((n, c) => n + c.length + 37, 0);
    expect(r.bytesByStep.deltas).toBeGreaterThanOrEqual(wholeBytes);
    expect(r.bytesByStep.deltas).toBeLessThan(wholeBytes + (3 - whole.length) * (100 + 53) + 200);
    await expectServedComplete(d);
  });

  it('falls back to whole chunks when the upstream does not serve deltas (404), or cuts the delta stream', async () => {
    const { d, changed } = await twoVersions('delta-e', 15);
    up.faults.delta = (_pairs, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'not-found', message: 'no route POST /v1/chunks/delta' } }));
      return true;
    };
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.switched).toBe(true);
    expect(
      up.requests
        .filter((q) => q.path === '/v1/chunks/batch')
        .flatMap((q) => q.ids!)
        .sort(),
    ).toEqual(changed.map((c) => c.target).sort());
    await expectServedComplete(d);

    // A third version; the delta stream is cut after the first record: that one is kept, the rest come whole.
    const { d: d2, changed: changed2 } = await twoVersions('delta-f', 16);
    up.faults.delta = (pairs, res) => {
      void (async () => {
        res.writeHead(200, { 'content-type': DELTA_CONTENT_TYPE });
        const p = pairs[0]!;
        res.write(
          Buffer.concat(
            encodeDeltaRecord(p.target, await up.store.get(p.target), await baseOf(up, p), p.offset),
          ),
        );
        await new Promise((resolve) => setTimeout(resolve, 20));
        res.socket?.destroy();
      })();
      return true;
    };
    up.requests.length = 0;
    const r2 = await d2.engine.sync();
    expect(r2.chunksFetched).toBe(3);
    const batch = up.requests.filter((q) => q.path === '/v1/chunks/batch').flatMap((q) => q.ids!);
    expect(batch).toHaveLength(2);
    expect(changed2.map((c) => c.target)).toEqual(expect.arrayContaining(batch));
    await expectServedComplete(d2);
  });

  it("pairs the chunks of a file renamed with its version (setup-1.bin → setup-2.bin) with the old file's", async () => {
    const data = randomBytesSeeded(400_000, 31);
    const v1 = await up.publish('delta-r', '1', data, 'setup-1.bin');
    const d = depot();
    await d.engine.sync();
    const old = layout(v1);
    const edited = Buffer.from(data);
    for (const i of [1, 3]) edited.fill(0x5a, old[i]!.start + 500, old[i]!.start + 600);
    await up.publish('delta-r', '2', edited, 'setup-2.bin');
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.chunksFetched).toBe(2);
    const asked = up.requests.filter((q) => q.path === '/v1/chunks/delta').flatMap((q) => q.pairs!);
    expect(asked).toHaveLength(2);
    expectWindowOf(old, asked[0]!, 1);
    expectWindowOf(old, asked[1]!, 3);
    expect(up.requests.filter((q) => q.path === '/v1/chunks/batch')).toEqual([]);
    expect(r.bytesByStep.deltas!).toBeLessThan((old[1]!.length + old[3]!.length) / 20);
    await expectServedComplete(d);
  });

  it('pairs a chunk after an insertion with the old chunk that starts where it does; no served version, no pairs', async () => {
    const data = randomBytesSeeded(300_000, 21);
    const v1 = await up.publish(`delta-g`, '1', data);
    const d = depot();
    expect(pairBases(d.db, d.store, [{ id: 'ab'.repeat(32), length: 10 }])).toEqual([]);
    await d.engine.sync();
    const old = layout(v1);
    const at = old[3]!.start + 1000;
    const v2 = await up.publish(
      'delta-g',
      '2',
      Buffer.concat([data.subarray(0, at), randomBytesSeeded(5000, 22), data.subarray(at)]),
    );
    // Make the new generation pending, as a sync does before it fetches chunks.
    const now = layout(v2);
    const newIds = new Set(now.map((c) => c.id).filter((id) => !old.some((o) => o.id === id)));
    expect(newIds.has(now[3]!.id)).toBe(true); // the chunk holding the insertion start
    d.db.putTarget(
      {
        name: v2.name,
        path: 'delta-g@2.json',
        length: v2.bytes.length,
        sha256: v2.name.slice(0, 64),
        manifestId: 'x'.repeat(64),
        totalBytes: v2.manifest.totalBytes,
        chunkCount: now.length,
        bytes: v2.bytes,
      },
      up.clock.now(),
    );
    d.db.setPending(up.repo.generation, [{ path: 'delta-g@2.json', name: v2.name }], up.clock.now());
    const needs = now.filter((c) => newIds.has(c.id)).map((c) => ({ id: c.id, length: c.length }));
    const pairs = pairBases(d.db, d.store, needs);
    expectWindowOf(
      old,
      pairs.find((p) => p.id === now[3]!.id)!,
      3,
    );
    // Every base is a chunk of version 1 that the depot holds.
    for (const p of pairs) for (const b of p.bases) expect(d.store.has(b)).toBe(true);
  });
});
