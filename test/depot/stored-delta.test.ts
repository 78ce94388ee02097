import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { compress } from '../../src/compress/zstd.js';
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

/** Text-like bytes from a vocabulary picked by `seed`: compresses well alone, shares little across seeds. */
function text(n: number, seed: number): Buffer {
  const r = randomBytesSeeded(n, seed);
  const words = Array.from({ length: 16 }, (_, i) => `w${seed}x${i}${'abcdefgh'.slice(0, (i % 7) + 1)}`);
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const w = words[r[i % n]! & 15]!;
    parts.push(w);
    len += w.length + 1;
  }
  return Buffer.from(parts.join(' ').slice(0, n));
}

describe('depot sync: whole chunks as stored zstd frames in a delta answer (kind 4)', () => {
  let up: Upstream;
  const depot = useUpstreamDepots((started) => (up = started));

  async function twoVersions(name: string, seed: number) {
    await up.publish(name, '1', text(400_000, seed));
    const log = keptLogger();
    const d = depot({ logger: log.logger });
    await d.engine.sync();
    // Other words throughout: every chunk changes, and byte deltas against the old one find nothing.
    const v2 = await up.publish(name, '2', text(400_000, seed + 1));
    const had = new Set(d.store.missing(v2.chunkIds));
    return { d, v2, newChunks: v2.chunkIds.filter((id) => had.has(id)), log };
  }

  it('receives the compressed chunks through the delta route and keeps them compressed', async () => {
    const { d, v2, newChunks, log } = await twoVersions('stored-a', 3);
    expect(newChunks.length).toBeGreaterThan(3);
    expect(up.store.storedForms(newChunks).every((f) => f?.encoding === 'zstd')).toBe(true);
    up.requests.length = 0;
    const r = await d.engine.sync();
    expect(r.switched).toBe(true);
    expect(r.chunksFetched).toBe(newChunks.length);
    expect(up.requests.filter((q) => q.path === '/v1/chunks/batch')).toEqual([]);
    expect(up.requests.filter((q) => q.path === '/v1/chunks/delta').length).toBeGreaterThan(0);
    // The chunks compressed, not the 400 kB of their plain bytes.
    const stored = up.store.storedForms(newChunks).reduce((s, f) => s + f!.length, 0);
    expect(stored).toBeLessThan(v2.manifest.totalBytes / 2);
    expect(r.bytesByStep.deltas!).toBeLessThan(stored + 40 * newChunks.length + 1);
    expect(d.store.storedForms(newChunks).every((f) => f?.encoding === 'zstd')).toBe(true);
    const step = log.lines.find((l) => l.msg === 'sync deltas');
    expect(step).toMatchObject({ stored: newChunks.length, whole: newChunks.length, refused: 0 });
    await expectServedComplete(d);
  });

  // Each bad frame: refused with the reason, nothing wrong stored, the chunk fetched whole by the batch route.
  const bad: Array<[string, (target: Buffer) => Buffer, RegExp]> = [
    [
      'decodes to more than the chunk (bomb)',
      (t) => compress(Buffer.concat([t, Buffer.alloc(1 << 20)]), 3),
      /does not decode.*more than the \d+ (bytes )?expected/,
    ],
    [
      'is damaged',
      (t) => {
        const f = Buffer.from(compress(t, 3));
        for (let i = 20; i < f.length - 8; i += 97) f[i]! ^= 0xa5;
        return f;
      },
      /does not decode|do not hash to its id/,
    ],
    [
      'is truncated',
      (t) => {
        const f = compress(t, 3);
        return f.subarray(0, f.length - 9);
      },
      /does not decode/,
    ],
    [
      'decodes to other bytes of the same length',
      (t) => {
        const other = Buffer.from(t);
        other[other.length >> 1]! ^= 0xff;
        return compress(other, 3);
      },
      /decoded bytes do not hash to its id/,
    ],
  ];
  it.each(bad)(
    'refuses a frame that %s, stores nothing wrong, and fetches the chunk whole',
    async (n, make, why) => {
      const { d, newChunks, log } = await twoVersions(`stored-bad-${n.length}`, 20 + n.length);
      up.faults.delta = (pairs, res) => {
        void (async () => {
          res.writeHead(200, { 'content-type': DELTA_CONTENT_TYPE });
          for (const p of pairs) {
            const frame = make(Buffer.from(await up.store.get(p.target)));
            const h = Buffer.alloc(37);
            h.write(p.target, 0, 32, 'hex');
            h[32] = DELTA_KIND.stored;
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
    },
  );
});
