import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { delta } from '../../src/compress/zstd.js';
import { DeltaCache } from '../../src/deltas/cache.js';
import { DeltaPool } from '../../src/deltas/pool.js';
import { CachedZstdDeltas } from '../../src/deltas/source.js';
import { createLogger } from '../../src/log.js';
import { DELTA_CONTENT_TYPE, DELTA_KIND } from '../../src/wire/chunk-delta.js';
import { randomBytesSeeded, type Upstream } from './fixture.js';
import { expectServedComplete } from './helpers.js';
import { useUpstreamDepots } from '../helpers/upstream-depots.js';

/** A logger whose lines are kept (JSON objects) to check what the sync said. */
function keptLogger(): { lines: Array<Record<string, unknown>>; logger: ReturnType<typeof createLogger> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      done();
    },
  });
  return { lines, logger: createLogger({ level: 'info', destination }) };
}

/**
 * A "rebuilt executable": version 2 is version 1 with 300 bytes inserted near the start (every later
 * chunk boundary moves) and a few hundred small edits spread through the file (every chunk differs),
 * so nearly no chunk is shared and byte deltas find little, while zstd against the old file's window
 * finds nearly everything.
 */
function rebuilt(data: Buffer, seed: number): Buffer {
  const out = Buffer.concat([data.subarray(0, 1000), randomBytesSeeded(300, seed), data.subarray(1000)]);
  const edits = randomBytesSeeded(400, seed + 1);
  for (let i = 0; i < 200; i++) {
    const at = 2000 + Math.floor(((out.length - 4000) * i) / 200);
    out[at] = edits[i]!;
  }
  return out;
}

describe('depot sync: zstd version deltas', () => {
  let up: Upstream;
  const depot = useUpstreamDepots((started) => (up = started));
  const pool = new DeltaPool({ workers: 1, maxQueued: 64, nice: 0 });
  const cacheDir = mkdtempSync(join(tmpdir(), 'zstd-delta-'));
  afterAll(async () => {
    await pool.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  async function twoVersions(name: string, seed: number) {
    const data = randomBytesSeeded(600_000, seed);
    const v1 = await up.publish(name, '1', data);
    const log = keptLogger();
    const d = depot({ logger: log.logger });
    await d.engine.sync();
    const v2 = await up.publish(name, '2', rebuilt(data, seed * 7));
    const had = new Set(d.store.missing(v2.chunkIds));
    return { d, v1, v2, newChunks: v2.chunkIds.filter((id) => had.has(id)), log };
  }

  it('fetches the chunks of a rebuilt file as zstd deltas against the old file, keeps them and serves them again', async () => {
    const cache = new DeltaCache({ dir: join(cacheDir, 'a'), maxBytes: 0 });
    up.zstd.source = new CachedZstdDeltas(cache, pool, 3);
    const { d, v2, newChunks } = await twoVersions('zstd-a', 41);
    expect(newChunks.length).toBeGreaterThan(5);
    const plain = v2.manifest.totalBytes;
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.switched).toBe(true);
    expect(r.chunksFetched).toBe(newChunks.length);
    expect(up.requests.filter((q) => q.path === '/v1/chunks/batch')).toEqual([]);
    // 200 one-byte edits and 300 inserted bytes: a few kB, not the 600 kB of new chunks.
    expect(r.bytesByStep.deltas!).toBeLessThan(plain / 20);
    await expectServedComplete(d);
    // The depot kept every delta it received, under the pair it asked for; served from there to a
    // child depot or agent that holds version 1 (they pair the same way), without computing.
    const asked = up.requests.filter((q) => q.path === '/v1/chunks/delta').flatMap((q) => q.pairs!);
    const served = new CachedZstdDeltas(d.deltas, undefined);
    let kept = 0;
    for (const p of asked) {
      const frame = await d.deltas.get(p.target, p.bases);
      if (!frame) continue;
      kept++;
      const target = await d.store.get(p.target);
      const base = Buffer.concat(await Promise.all(p.bases.map((b) => d.store.get(b))));
      expect(await served.frame(p.target, p.bases, Buffer.from(target), base)).toEqual(frame);
    }
    // Nearly all came as zstd deltas (a chunk may go as a byte delta when that is smaller).
    expect(kept).toBeGreaterThan(newChunks.length * 0.8);
  });

  // Each bad record: the rebuild fails (or its bytes fail the id check), the sync says why, nothing
  // wrong is stored, and the chunk is fetched whole.
  const bad: Array<[string, (target: Buffer, base: Buffer) => Buffer, RegExp]> = [
    [
      'decodes to wrong bytes',
      (target, base) => {
        const other = Buffer.from(target);
        other[other.length >> 1]! ^= 0xff;
        return delta(base, other, 3);
      },
      /do not hash to its id/,
    ],
    [
      'decodes to more than the declared length (bomb)',
      (target, base) => delta(base, Buffer.concat([target, Buffer.alloc(1 << 20)]), 3),
      /more than the \d+ (bytes )?expected/,
    ],
    [
      'is truncated',
      (target, base) => {
        const f = delta(base, target, 3);
        return f.subarray(0, f.length - 7);
      },
      /ends early|truncated|corrupt|checksum|does not decode/,
    ],
    [
      'was made against a base the receiver does not hold',
      (target, base) => {
        // A frame that copies most of its output from a base of other bytes (here: every byte of the
        // real base and target flipped, so it matches as well as the real one would).
        const flip = (b: Buffer) => Buffer.from(b.map((x) => x ^ 0x5a));
        return delta(flip(base), flip(target), 3);
      },
      // Caught by zstd's checksum or, where the frame happens to decode, by the id check.
      /does not decode against this base|do not hash to its id/,
    ],
  ];
  it.each(bad)(
    'refuses a zstd delta that %s, stores nothing wrong, and fetches the chunk whole',
    async (_n, make, why) => {
      const { d, newChunks, log } = await twoVersions(`zstd-bad-${_n.length}`, 50 + _n.length);
      up.faults.delta = (pairs, res) => {
        void (async () => {
          res.writeHead(200, { 'content-type': DELTA_CONTENT_TYPE });
          for (const p of pairs) {
            const target = await up.store.get(p.target);
            const base = Buffer.concat(await Promise.all(p.bases.map((b) => up.store.get(b))));
            const frame = make(Buffer.from(target), base);
            const h = Buffer.alloc(37);
            h.write(p.target, 0, 32, 'hex');
            h[32] = DELTA_KIND.zstd;
            h.writeUInt32BE(frame.length, 33);
            res.write(Buffer.concat([h, frame]));
          }
          res.end();
        })();
        return true;
      };
      up.requests.length = 0;
      const r = await d.engine.sync();
      expect(r.switched).toBe(true);
      const batch = up.requests.filter((q) => q.path === '/v1/chunks/batch').flatMap((q) => q.ids!);
      expect(batch.sort()).toEqual([...newChunks].sort());
      const refused = log.lines.filter((l) => l.msg === 'chunk delta refused; the chunk is fetched whole');
      expect(refused.length).toBe(newChunks.length);
      for (const l of refused) expect(String(l.reason)).toMatch(why);
      await expectServedComplete(d);
      // No refused delta was kept for the depot's children.
      for (const id of newChunks) expect(await d.deltas.has(id, ['x'])).toBe(false);
      const { readdirSync, existsSync } = await import('node:fs');
      expect(existsSync(d.layout.deltasDir) ? readdirSync(d.layout.deltasDir) : []).toEqual([]);
    },
  );

  /** A delta answer of kind 5 for every pair: a frame against `bases`, which the answer names. */
  function answerChosen(bases: (pair: { bases: string[] }) => string[], reference = bases) {
    up.faults.delta = (pairs, res) => {
      void (async () => {
        res.writeHead(200, { 'content-type': DELTA_CONTENT_TYPE });
        for (const p of pairs) {
          const target = await up.store.get(p.target);
          const named = bases(p);
          const ref = Buffer.concat(await Promise.all(reference(p).map((b) => up.store.get(b))));
          const frame = delta(ref, Buffer.from(target), 3);
          const h = Buffer.alloc(33 + 2 + 32 * named.length + 4);
          h.write(p.target, 0, 32, 'hex');
          h[32] = DELTA_KIND.chosen;
          h.writeUInt16BE(named.length, 33);
          named.forEach((b, i) => h.write(b, 35 + 32 * i, 32, 'hex'));
          h.writeUInt32BE(frame.length, h.length - 4);
          res.write(Buffer.concat([h, frame]));
        }
        res.end();
      })();
      return true;
    };
  }

  it('rebuilds chunks from deltas against bases the upstream chose (kind 5), asked for once announced, and keeps them for its children', async () => {
    const { d, v1, v2, newChunks } = await twoVersions('zstd-chosen', 91);
    // The upstream names other chunks of version 1 than the pair's window: all of them, reversed.
    const old = [...v1.chunkIds].reverse().slice(0, 24);
    expect(old.length).toBeGreaterThan(3);
    answerChosen(() => old);
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.switched).toBe(true);
    expect(r.chunksFetched).toBe(newChunks.length);
    // Every chunk rebuilt from the named chunks (those past the 24 named come from fewer matches).
    expect(r.bytesByStep.deltas!).toBeLessThan(v2.manifest.totalBytes / 2);
    await expectServedComplete(d);
    // Kept under the pair the depot asked for, with the chosen bases: served again only as kind 5.
    const requests = up.requests.filter((q) => q.path === '/v1/chunks/delta');
    expect(requests.every((q) => q.chosen === true && q.encoding === 'br')).toBe(true);
    const asked = requests.flatMap((q) => q.pairs!);
    const source = new CachedZstdDeltas(d.deltas, undefined);
    expect(asked.length).toBeGreaterThan(newChunks.length / 2);
    for (const p of asked) expect((await source.chosen(p.target, p.bases))?.bases).toEqual(old);
  });

  it('refuses a kind 5 delta naming a base the depot does not hold, stores nothing wrong, and fetches the chunk whole', async () => {
    const { d, newChunks, log } = await twoVersions('zstd-chosen-bad', 92);
    const foreign = 'e'.repeat(64);
    // Made against the pair's own bases (so it is small), but naming one more the depot never had.
    answerChosen(
      (p) => [...p.bases, foreign],
      (p) => p.bases,
    );
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.switched).toBe(true);
    const batch = up.requests.filter((q) => q.path === '/v1/chunks/batch').flatMap((q) => q.ids!);
    expect(batch.sort()).toEqual([...newChunks].sort());
    const asked = up.requests.filter((q) => q.path === '/v1/chunks/delta').flatMap((q) => q.pairs!);
    const refused = log.lines.filter((l) => l.msg === 'chunk delta refused; the chunk is fetched whole');
    expect(asked.length).toBeGreaterThan(0);
    expect(refused.length).toBe(asked.length);
    for (const l of refused) expect(String(l.reason)).toMatch(/base chunk e{64} could not be read/);
    await expectServedComplete(d);
    const { readdirSync, existsSync } = await import('node:fs');
    expect(existsSync(d.layout.deltasDir) ? readdirSync(d.layout.deltasDir) : []).toEqual([]);
  });
});
