import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { DepotsyncError, isDepotsyncError } from '../../../src/errors.js';
import { blake3Hex } from '../../../src/hash/blake3.js';
import { silentLogger } from '../../../src/log.js';
import type { ServeEnv } from '../../../src/serve/env.js';
import { errorHandler } from '../../../src/serve/http-errors.js';
import { readRoutes, type ReadApiSource } from '../../../src/serve/read-api.js';
import { compress, delta } from '../../../src/compress/zstd.js';
import { plainBytes } from '../../../src/store/encoding.js';
import { rebuildFromRecord } from '../../../src/deltas/rebuild.js';
import {
  CHOSEN_BASES,
  CHOSEN_BASES_HEADER,
  CHUNK_DELTA_LIMITS,
  DELTA_CONTENT_TYPE,
  DELTA_KIND,
  DeltaDecoder,
  computeDelta,
  encodeDeltaRecord,
  encodeDeltaRequest,
  parseDeltaRequest,
  parseDeltaRequestWith,
  rebuildChunk,
  type DeltaRecord,
} from '../../../src/wire/chunk-delta.js';

function seeded(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function edited(base: Buffer, at: number, bytes: number, fill = 0xaa): Buffer {
  const t = Buffer.from(base);
  t.fill(fill, at, at + bytes);
  return t;
}

/** Encode one answer, decode it (fed in small pieces: byte by byte for small records), rebuild against the base. */
function roundTrip(
  base: Buffer | undefined,
  target: Buffer,
): { rec: DeltaRecord; wire: number; out: Buffer | string } {
  const id = blake3Hex(target);
  const wire = Buffer.concat(encodeDeltaRecord(id, target, base));
  const dec = new DeltaDecoder([id], target.length);
  const recs: DeltaRecord[] = [];
  const step = wire.length < 10_000 ? 1 : 997;
  for (let i = 0; i < wire.length; i += step) recs.push(...dec.push(wire.subarray(i, i + step)));
  dec.finish();
  expect(recs).toHaveLength(1);
  const rec = recs[0]!;
  const out =
    rec.kind === 'delta'
      ? rebuildChunk(base!, rec, target.length)
      : rec.kind === 'whole'
        ? rec.data
        : 'absent';
  return { rec, wire: wire.length, out };
}

describe('chunk delta wire format', () => {
  const base = seeded(70_000, 1);

  it.each([
    ['at the start', 0, 4096],
    ['in the middle', 30_000, 4096],
    ['at the end', 70_000 - 4096, 4096],
    ['of one byte', 12_345, 1],
  ])('rebuilds a chunk edited %s from prefix, suffix and the middle bytes only', (_name, at, n) => {
    const target = edited(base, at, n);
    const { rec, wire, out } = roundTrip(base, target);
    expect(rec.kind).toBe('delta');
    expect(Buffer.isBuffer(out) && out.equals(target)).toBe(true);
    expect(wire).toBeLessThanOrEqual(53 + n);
  });

  it('rebuilds a chunk that grew or shrank (an insertion or a deletion inside it)', () => {
    const grown = Buffer.concat([base.subarray(0, 20_000), seeded(3000, 9), base.subarray(20_000)]);
    const shrunk = Buffer.concat([base.subarray(0, 20_000), base.subarray(25_000)]);
    for (const target of [grown, shrunk]) {
      const { rec, out } = roundTrip(base, target);
      expect(rec.kind).toBe('delta');
      expect((out as Buffer).equals(target)).toBe(true);
    }
    // Prefix and suffix never overlap in the target; they may copy the same bytes of the base.
    const once = base.subarray(0, 100);
    const twice = Buffer.concat([once, once]);
    expect(computeDelta(once, twice)).toEqual({ prefix: 100, prefixFrom: 0, suffix: 100, suffixFrom: 0 });
    const { out } = roundTrip(Buffer.from(once), twice);
    expect((out as Buffer).equals(twice)).toBe(true);
  });

  it('finds a chunk whose boundaries moved inside the old ones (in place, at the offset the receiver names)', () => {
    // Old chunks A ‖ B; an edit moved a boundary, so the new chunk starts inside A and ends inside B.
    const ab = seeded(120_000, 3);
    const start = 50_000;
    const target = edited(ab.subarray(start, start + 60_000), 30_000, 2000);
    const id = blake3Hex(target);
    expect(computeDelta(ab, target, 0)).toMatchObject({ prefix: 0, suffix: 0 }); // no common end without the offset
    const d = computeDelta(ab, target, start);
    expect(d).toEqual({ prefix: 30_000, prefixFrom: start, suffix: 28_000, suffixFrom: start + 32_000 });
    const wire = Buffer.concat(encodeDeltaRecord(id, target, ab, start));
    expect(wire.length).toBe(53 + 2000);
    const rec = new DeltaDecoder([id], target.length).push(wire)[0] as Extract<
      DeltaRecord,
      { kind: 'delta' }
    >;
    expect((rebuildChunk(ab, rec, target.length) as Buffer).equals(target)).toBe(true);
    // An offset beyond the base is ignored, not trusted.
    expect(computeDelta(ab, target, 10_000_000)).toMatchObject({ prefix: 0, suffix: 0 });
  });

  it('sends the whole chunk when the base shares (almost) nothing, or the sender lacks the base', () => {
    const other = seeded(70_000, 2);
    const a = roundTrip(base, other);
    expect(a.rec.kind).toBe('whole');
    expect((a.out as Buffer).equals(other)).toBe(true);
    const b = roundTrip(undefined, edited(base, 10, 10));
    expect(b.rec.kind).toBe('whole');
  });

  it('says when the sender lacks the target', () => {
    const id = 'ab'.repeat(32);
    const wire = Buffer.concat(encodeDeltaRecord(id, undefined, base));
    const dec = new DeltaDecoder([id], 1000);
    expect(dec.push(wire)).toEqual([{ target: id, kind: 'absent' }]);
    dec.finish();
  });

  describe('a lying or broken sender is refused', () => {
    const target = edited(base, 30_000, 4096);
    const id = blake3Hex(target);
    const good = Buffer.concat(encodeDeltaRecord(id, target, base));
    const decode = (wire: Buffer, max = target.length, ids = [id]) => {
      const dec = new DeltaDecoder(ids, max);
      const recs = dec.push(wire);
      dec.finish();
      return recs;
    };
    const refused = (f: () => unknown): DepotsyncError => {
      try {
        f();
      } catch (e) {
        if (e instanceof DepotsyncError) return e;
        throw e;
      }
      throw new Error('expected a refusal');
    };

    it('a wrong middle byte rebuilds bytes that do not hash to the id', () => {
      const bad = Buffer.from(good);
      bad[bad.length - 1] ^= 1;
      const rec = decode(bad)[0] as Extract<DeltaRecord, { kind: 'delta' }>;
      const out = rebuildChunk(base, rec, target.length) as Buffer;
      expect(blake3Hex(out)).not.toBe(id);
    });

    it('lengths that do not add up to the chunk, or reach past the base, are refused by the rebuild', () => {
      const rec = decode(good)[0] as Extract<DeltaRecord, { kind: 'delta' }>;
      expect(rebuildChunk(base, { ...rec, prefix: rec.prefix + 1 }, target.length)).toMatch(
        /is not the chunk's length/,
      );
      expect(rebuildChunk(base.subarray(0, 1000), rec, target.length)).toMatch(
        /reaches past the base's 1000 bytes/,
      );
      expect(rebuildChunk(base, { ...rec, suffixFrom: base.length - 10 }, target.length)).toMatch(
        /suffix .* reaches past the base's 70000 bytes/,
      );
      expect(rebuildChunk(base, { ...rec, prefixFrom: 0xffffffff }, target.length)).toMatch(
        /prefix .* reaches past/,
      );
    });

    it.each([
      ['prefix', 33],
      ['suffix', 41],
      ['middle length', 49],
    ])('a %s beyond the largest chunk is refused before anything is buffered', (field, at) => {
      const bad = Buffer.from(good);
      bad.writeUInt32BE(0xfffffff0, at);
      const e = refused(() => decode(bad));
      expect(e.code).toBe('too-large');
      expect(e.message).toContain(`declares ${field} ${0xfffffff0}`);
    });

    it('a sum of lengths beyond the largest chunk is refused', () => {
      const bad = Buffer.from(good);
      bad.writeUInt32BE(target.length, 33);
      bad.writeUInt32BE(target.length, 41);
      expect(refused(() => decode(bad)).message).toContain('prefix + suffix + middle');
    });

    it('records for ids not asked for, unknown kinds, extra records and cut streams are refused', () => {
      expect(refused(() => decode(good, target.length, ['00'.repeat(32)])).message).toMatch(
        /record 0 is chunk .*, expected 0000/,
      );
      const kind = Buffer.from(good);
      kind[32] = 7;
      expect(refused(() => decode(kind)).message).toContain('unknown kind 7');
      expect(refused(() => decode(Buffer.concat([good, good]))).message).toContain(
        'more records than the 1 pairs requested',
      );
      const cut = refused(() => decode(good.subarray(0, good.length - 1)));
      expect(cut.code).toBe('truncated');
      const whole = Buffer.concat(encodeDeltaRecord(id, target, undefined));
      expect(refused(() => decode(whole, 100)).code).toBe('too-large');
    });
  });

  describe('request', () => {
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);

    it('round-trips and stays within the body limit at the pair limit', () => {
      const pairs = Array.from({ length: CHUNK_DELTA_LIMITS.maxPairs }, () => ({
        bases: [a, a, a, a],
        offset: 0xffffffff,
        target: b,
      }));
      const body = encodeDeltaRequest(pairs);
      expect(body.length).toBeLessThanOrEqual(CHUNK_DELTA_LIMITS.maxRequestBytes);
      expect(parseDeltaRequest(body)).toEqual(pairs);
    });

    it.each([
      ['not JSON', '{', 'bad-json', /chunk delta request: expected a string key at byte 1/],
      ['a duplicate key', '{"pairs":[],"pairs":[]}', 'bad-json', /duplicate key "pairs"/],
      ['an oversized body', `{"pairs":[${' '.repeat(1800 * 1024)}]}`, 'too-large', /over the limit/],
      ['not an object', '[]', 'bad-input', /expected \{"pairs"/],
      ['an unknown field', JSON.stringify({ pairs: [], more: 1 }), 'bad-input', /unknown field "more"/],
      [
        'a bad id',
        JSON.stringify({ pairs: [{ bases: [a], offset: 0, target: 'B'.repeat(64) }] }),
        'bad-input',
        /pairs\[0\]\.target is not a chunk id/,
      ],
      [
        'a bad base id',
        JSON.stringify({ pairs: [{ bases: [a, 'x'], offset: 0, target: b }] }),
        'bad-input',
        /pairs\[0\]\.bases\[1\] is not a chunk id/,
      ],
      [
        'no bases',
        JSON.stringify({ pairs: [{ bases: [], offset: 0, target: b }] }),
        'bad-input',
        /pairs\[0\]\.bases is not a list of 1 to 24 chunk ids/,
      ],
      [
        'too many bases',
        JSON.stringify({ pairs: [{ bases: new Array(25).fill(a), offset: 0, target: b }] }),
        'bad-input',
        /pairs\[0\]\.bases is not a list of 1 to 24/,
      ],
      [
        'bases naming a later pair',
        JSON.stringify({ pairs: [{ bases: 0, offset: 0, target: b }] }),
        'bad-input',
        /pairs\[0\]\.bases is not the index of an earlier pair/,
      ],
      [
        'a zstd flag that is not a boolean',
        JSON.stringify({ pairs: [], zstd: 1 }),
        'bad-input',
        /"zstd" is not true or false/,
      ],
      [
        'a pair with extra fields',
        JSON.stringify({ pairs: [{ bases: [a], offset: 0, target: b, x: 1 }] }),
        'bad-input',
        /pairs\[0\] has unknown field "x"/,
      ],
      [
        'a missing offset',
        JSON.stringify({ pairs: [{ bases: [a], target: b }] }),
        'bad-input',
        /pairs\[0\]\.offset is not an integer/,
      ],
      [
        'a negative offset',
        JSON.stringify({ pairs: [{ bases: [a], offset: -1, target: b }] }),
        'bad-input',
        /pairs\[0\]\.offset is not an integer/,
      ],
      [
        'too many pairs',
        JSON.stringify({
          pairs: [
            { bases: [a], offset: 0, target: b },
            { bases: [a], offset: 0, target: b },
          ],
        }),
        'too-large',
        /2 pairs, limit 1/,
      ],
    ])('refuses %s', (_n, body, code, message) => {
      try {
        parseDeltaRequest(Buffer.from(body), 1);
        expect.unreachable();
      } catch (e) {
        expect(isDepotsyncError(e, code as never)).toBe(true);
        expect((e as Error).message).toMatch(message);
      }
    });
  });
});

describe('POST /v1/chunks/delta (read API)', () => {
  const base = seeded(50_000, 5);
  const target = edited(base, 20_000, 2000);
  const other = seeded(40_000, 6);
  const chunks = new Map([base, target, other].map((c) => [blake3Hex(c), c]));
  const [baseId, targetId, otherId] = [...chunks.keys()] as [string, string, string];
  const source: ReadApiSource = {
    metadata: () => undefined,
    target: () => undefined,
    revocations: () => undefined,
    chunks: {
      has: (id) => chunks.has(id),
      get: async (id) => {
        const c = chunks.get(id);
        if (!c) throw new DepotsyncError('not-found', `chunk ${id} not found`);
        return c;
      },
    },
  };
  const app = new Hono<ServeEnv>();
  app.onError(errorHandler(silentLogger()));
  app.route('/', readRoutes(source, silentLogger()));
  const post = (body: string | Buffer) =>
    app.request('/v1/chunks/delta', {
      method: 'POST',
      body: typeof body === 'string' ? body : new Uint8Array(body),
      headers: { 'content-type': 'application/json' },
    });

  it('answers each pair in order: a delta, the whole chunk when a base is unknown, absent when the target is', async () => {
    const unknown = 'c'.repeat(64);
    const pairs = [
      { bases: [baseId], offset: 0, target: targetId },
      { bases: [baseId, unknown], offset: 0, target: otherId },
      { bases: [baseId], offset: 0, target: unknown },
    ];
    const r = await post(encodeDeltaRequest(pairs));
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe(DELTA_CONTENT_TYPE);
    const wire = Buffer.from(await r.arrayBuffer());
    const recs = new DeltaDecoder(
      pairs.map((p) => p.target),
      50_000,
    ).push(wire);
    expect(recs.map((x) => x.kind)).toEqual(['delta', 'whole', 'absent']);
    expect(
      (
        rebuildChunk(base, recs[0] as Extract<DeltaRecord, { kind: 'delta' }>, target.length) as Buffer
      ).equals(target),
    ).toBe(true);
    expect(wire.length).toBe(53 + 2000 + 37 + 40_000 + 33);
  });

  it('answers 400 to a bad request and 413 to one above the limits', async () => {
    expect((await post('{"pairs":[1]}')).status).toBe(400);
    const many = encodeDeltaRequest(
      Array.from({ length: CHUNK_DELTA_LIMITS.maxPairs + 1 }, () => ({
        bases: [baseId],
        offset: 0,
        target: targetId,
      })),
    );
    expect((await post(many)).status).toBe(413);
  });
});

describe('zstd delta records (kind 3)', () => {
  // An old "build" and the next one: 300 bytes inserted, every 5000th byte changed.
  const base = seeded(200_000, 7);
  const target = Buffer.concat([base.subarray(0, 1000), seeded(300, 8), base.subarray(1000)]);
  for (let i = 3000; i < target.length; i += 5000) target[i]! ^= 0x11;
  const id = blake3Hex(target);
  const frame = delta(base, target, 3);

  it('is chosen when smaller than the byte delta and the chunk, round-trips, and rebuilds the chunk', () => {
    expect(frame.length).toBeLessThan(target.length / 20);
    const wire = Buffer.concat(encodeDeltaRecord(id, target, base, 0, 64, frame));
    expect(wire[32]).toBe(DELTA_KIND.zstd);
    expect(wire.length).toBe(37 + frame.length);
    const dec = new DeltaDecoder([id], target.length);
    const recs: DeltaRecord[] = [];
    for (let i = 0; i < wire.length; i += 1000) recs.push(...dec.push(wire.subarray(i, i + 1000)));
    dec.finish();
    expect(recs).toHaveLength(1);
    expect(recs[0]!.kind).toBe('zstd');
    const out = rebuildFromRecord(base, recs[0] as Extract<DeltaRecord, { kind: 'zstd' }>, target.length);
    expect(Buffer.isBuffer(out) && out.equals(target)).toBe(true);
    // A frame no smaller than the chunk is not sent: the byte delta or the chunk goes instead.
    const big = Buffer.alloc(target.length + 1);
    expect(Buffer.concat(encodeDeltaRecord(id, target, base, 0, 64, big))[32]).not.toBe(DELTA_KIND.zstd);
  });

  it('refuses a frame longer than the largest chunk before buffering it, and a cut record', () => {
    const h = Buffer.alloc(37);
    h.write(id, 0, 32, 'hex');
    h[32] = DELTA_KIND.zstd;
    h.writeUInt32BE(0x7fffffff, 33);
    expect(() => new DeltaDecoder([id], target.length).push(h)).toThrow(
      /frame length 2147483647, above the limit/,
    );
    const wire = Buffer.concat(encodeDeltaRecord(id, target, base, 0, 64, frame));
    const dec = new DeltaDecoder([id], target.length);
    expect(dec.push(wire.subarray(0, wire.length - 1))).toEqual([]);
    try {
      dec.finish();
      expect.unreachable();
    } catch (e) {
      expect(isDepotsyncError(e, 'truncated')).toBe(true);
    }
  });

  it('rebuilds nothing from a bomb, a truncated frame, a damaged frame or another base: it says why', () => {
    const rec = (f: Buffer) => ({ target: id, kind: 'zstd' as const, frame: f });
    expect(rebuildFromRecord(base, rec(frame), target.length - 1)).toMatch(
      /more than the \d+ (bytes )?expected/,
    );
    expect(rebuildFromRecord(base, rec(frame.subarray(0, frame.length - 5)), target.length)).toMatch(
      /does not decode against this base/,
    );
    const damaged = Buffer.from(frame);
    damaged[damaged.length >> 1]! ^= 0xff;
    expect(rebuildFromRecord(base, rec(damaged), target.length)).toMatch(/does not decode against this base/);
    const otherBase = Buffer.from(base);
    otherBase.fill(0, 50_000, 150_000);
    expect(rebuildFromRecord(otherBase, rec(frame), target.length)).toMatch(
      /does not decode against this base/,
    );
  });

  it("is sent by the read API only to a caller that accepts it; a pair may name an earlier pair's bases", async () => {
    const chunks = new Map([base, target].map((c) => [blake3Hex(c), c]));
    const source: ReadApiSource = {
      metadata: () => undefined,
      target: () => undefined,
      revocations: () => undefined,
      chunks: {
        has: (x) => chunks.has(x),
        get: async (x) => chunks.get(x)!,
      },
    };
    const app = new Hono<ServeEnv>();
    app.onError(errorHandler(silentLogger()));
    app.route(
      '/',
      readRoutes(source, silentLogger(), {
        zstdDeltas: { frame: async (_t, _b, t, b) => delta(b, t, 3) },
      }),
    );
    const pairs = [
      { bases: [blake3Hex(base)], offset: 0, target: id },
      { bases: [blake3Hex(base)], offset: 0, target: id },
    ];
    const body = encodeDeltaRequest(pairs, true);
    expect(JSON.parse(body.toString()).pairs[1].bases).toBe(0);
    expect(parseDeltaRequest(body)).toEqual(pairs);
    for (const zstd of [true, false]) {
      const r = await app.request('/v1/chunks/delta', {
        method: 'POST',
        body: new Uint8Array(encodeDeltaRequest(pairs, zstd)),
        headers: { 'content-type': 'application/json' },
      });
      const recs = new DeltaDecoder([id, id], target.length).push(Buffer.from(await r.arrayBuffer()));
      expect(recs.map((x) => x.kind)).toEqual(zstd ? ['zstd', 'zstd'] : ['delta', 'delta']);
    }
  });
});

describe('whole chunks as stored zstd frames (kind 4)', () => {
  // Text-like content: compresses well alone, shares nothing with the base.
  const words = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta'];
  const text = (n: number, seed: number) => {
    const r = seeded(n, seed);
    const parts: string[] = [];
    for (let i = 0; parts.join(' ').length < n; i++) parts.push(words[r[i % n]! & 7]!);
    return Buffer.from(parts.join(' ').slice(0, n));
  };
  const base = seeded(60_000, 21);
  const target = text(60_000, 22);
  const id = blake3Hex(target);
  const stored = compress(target, 3);

  it('is chosen when smaller than the chunk, the byte delta and the zstd delta; decodes to the chunk', () => {
    expect(stored.length).toBeLessThan(target.length / 3);
    const wire = Buffer.concat(encodeDeltaRecord(id, target, base, 0, 64, undefined, stored));
    expect(wire[32]).toBe(DELTA_KIND.stored);
    expect(wire.length).toBe(37 + stored.length);
    const dec = new DeltaDecoder([id], target.length);
    const recs: DeltaRecord[] = [];
    for (let i = 0; i < wire.length; i += 999) recs.push(...dec.push(wire.subarray(i, i + 999)));
    dec.finish();
    expect(recs).toEqual([{ target: id, kind: 'stored', frame: stored }]);
    expect(Buffer.from(plainBytes('zstd', stored, target.length, 'x')).equals(target)).toBe(true);
    // A zstd delta smaller than the stored frame wins; one no smaller loses to it.
    const small = stored.subarray(0, stored.length - 1);
    expect(Buffer.concat(encodeDeltaRecord(id, target, base, 0, 64, small, stored))[32]).toBe(
      DELTA_KIND.zstd,
    );
    expect(Buffer.concat(encodeDeltaRecord(id, target, base, 0, 64, stored, stored))[32]).toBe(
      DELTA_KIND.stored,
    );
    // A byte delta that moves fewer bytes wins over it.
    const near = Buffer.from(target);
    near.fill(0x41, 30_000, 30_100);
    const bd = encodeDeltaRecord(blake3Hex(near), near, target, 0, 64, undefined, compress(near, 3));
    expect(Buffer.concat(bd)[32]).toBe(DELTA_KIND.delta);
  });

  it('is sent only to a caller that asks (`stored`); others get the plain chunk as before', async () => {
    const chunks = new Map([base, target].map((c) => [blake3Hex(c), c]));
    const source: ReadApiSource = {
      metadata: () => undefined,
      target: () => undefined,
      revocations: () => undefined,
      chunks: {
        has: (x) => chunks.has(x),
        get: async (x) => chunks.get(x)!,
        getStored: async (x) =>
          x === id
            ? { data: stored, encoding: 'zstd' as const, plainLength: target.length }
            : { data: chunks.get(x)!, encoding: 'plain' as const, plainLength: chunks.get(x)!.length },
      } as unknown as ReadApiSource['chunks'],
    };
    const app = new Hono<ServeEnv>();
    app.onError(errorHandler(silentLogger()));
    app.route('/', readRoutes(source, silentLogger()));
    const pairs = [{ bases: [blake3Hex(base)], offset: 0, target: id }];
    expect(JSON.parse(encodeDeltaRequest(pairs, false, true).toString()).stored).toBe(true);
    expect(JSON.parse(encodeDeltaRequest(pairs).toString())).toEqual({ pairs });
    for (const asks of [true, false]) {
      const r = await app.request('/v1/chunks/delta', {
        method: 'POST',
        body: new Uint8Array(encodeDeltaRequest(pairs, true, asks)),
        headers: { 'content-type': 'application/json' },
      });
      const wire = Buffer.from(await r.arrayBuffer());
      expect(wire[32]).toBe(asks ? DELTA_KIND.stored : DELTA_KIND.whole);
      expect(wire.length).toBe(37 + (asks ? stored.length : target.length));
    }
    const bad = await app.request('/v1/chunks/delta', {
      method: 'POST',
      body: JSON.stringify({ pairs, stored: 1 }),
      headers: { 'content-type': 'application/json' },
    });
    expect(bad.status).toBe(400);
  });

  it('refuses a frame longer than the largest chunk before buffering it', () => {
    const h = Buffer.alloc(37);
    h.write(id, 0, 32, 'hex');
    h[32] = DELTA_KIND.stored;
    h.writeUInt32BE(target.length + 1, 33);
    expect(() => new DeltaDecoder([id], target.length).push(h)).toThrow(/frame length \d+, above the limit/);
  });
});

describe('zstd deltas against bases the sender chose (kind 5)', () => {
  // The old build's code moved: the target's bytes come from far away in the old file, not from the
  // window the receiver pairs it with.
  const window = seeded(100_000, 21);
  const moved = seeded(100_000, 22);
  const target = Buffer.concat([moved.subarray(0, 40_000), seeded(200, 23), moved.subarray(40_000)]);
  const id = blake3Hex(target);
  const [windowId, movedId] = [blake3Hex(window), blake3Hex(moved)];
  const frame = delta(moved, target, 3);
  const chosen = { bases: [movedId], frame };

  it('is sent when smaller than every other record, round-trips with its bases, and rebuilds from them', () => {
    const parts = encodeDeltaRecord(
      id,
      target,
      window,
      0,
      64,
      delta(window, target, 3),
      compress(target),
      chosen,
    );
    const wire = Buffer.concat(parts);
    expect(wire[32]).toBe(DELTA_KIND.chosen);
    expect(wire.length).toBe(33 + 2 + 32 + 4 + frame.length);
    const dec = new DeltaDecoder([id], target.length);
    const recs: DeltaRecord[] = [];
    for (let i = 0; i < wire.length; i += 7) recs.push(...dec.push(wire.subarray(i, i + 7)));
    dec.finish();
    expect(recs).toEqual([{ target: id, kind: 'chosen', bases: [movedId], frame }]);
    const out = rebuildFromRecord(moved, recs[0] as Extract<DeltaRecord, { kind: 'chosen' }>, target.length);
    expect(Buffer.isBuffer(out) && out.equals(target)).toBe(true);
    // Against the pair's window (the receiver reading the wrong bases) it does not decode.
    expect(
      rebuildFromRecord(window, recs[0] as Extract<DeltaRecord, { kind: 'chosen' }>, target.length),
    ).toMatch(/does not decode against this base/);
  });

  it('is not sent when another record is as small, or with no or too many bases', () => {
    const small = delta(moved, target, 3);
    const tiny = small.subarray(0, 10);
    // A kind 3 frame as small as the chosen one (its 34 bytes of bases make it larger): kind 3.
    expect(Buffer.concat(encodeDeltaRecord(id, target, window, 0, 64, small, undefined, chosen))[32]).toBe(
      DELTA_KIND.zstd,
    );
    expect(Buffer.concat(encodeDeltaRecord(id, target, window, 0, 64, undefined, tiny, chosen))[32]).toBe(
      DELTA_KIND.stored,
    );
    const none = { bases: [], frame };
    const many = { bases: Array.from({ length: CHUNK_DELTA_LIMITS.maxBases + 1 }, () => movedId), frame };
    for (const c of [none, many])
      expect(Buffer.concat(encodeDeltaRecord(id, target, window, 0, 64, undefined, undefined, c))[32]).toBe(
        DELTA_KIND.whole,
      );
  });

  it('refuses a record naming no bases or more than the limit, and a frame longer than the largest chunk', () => {
    const head = (n: number, len: number) => {
      const h = Buffer.alloc(33 + 2 + 32 * n + 4);
      h.write(id, 0, 32, 'hex');
      h[32] = DELTA_KIND.chosen;
      h.writeUInt16BE(n, 33);
      h.writeUInt32BE(len, h.length - 4);
      return h;
    };
    expect(() => new DeltaDecoder([id], target.length).push(head(0, 10))).toThrow(
      /names 0 bases, not 1 to 24/,
    );
    expect(() => new DeltaDecoder([id], target.length).push(head(25, 10))).toThrow(/names 25 bases/);
    expect(() => new DeltaDecoder([id], target.length).push(head(1, target.length + 1))).toThrow(
      /frame length \d+, above the limit/,
    );
    const cut = new DeltaDecoder([id], target.length);
    expect(cut.push(head(2, 100))).toEqual([]);
    expect(() => cut.finish()).toThrow(/stream ended after 0 of 1 records/);
  });

  it('is sent by the read API only to a caller that asks (`chosen`), and the API announces it reads the flag', async () => {
    const chunks = new Map([window, moved, target].map((c) => [blake3Hex(c), c]));
    const source: ReadApiSource = {
      metadata: () => Buffer.from('{"signed":{}}'),
      target: () => undefined,
      revocations: () => undefined,
      chunks: { has: (x) => chunks.has(x), get: async (x) => chunks.get(x)! },
    };
    const app = new Hono<ServeEnv>();
    app.onError(errorHandler(silentLogger()));
    app.route(
      '/',
      readRoutes(source, silentLogger(), {
        zstdDeltas: {
          frame: async (_t, _b, t, b) => delta(b, t, 3),
          chosen: async (t, b) => (t === id && b[0] === windowId ? chosen : undefined),
        },
      }),
    );
    const meta = await app.request('/v1/metadata/timestamp.json');
    expect(meta.headers.get(CHOSEN_BASES_HEADER)).toBe(CHOSEN_BASES);
    const pairs = [{ bases: [windowId], offset: 0, target: id }];
    for (const flag of [true, false]) {
      const body = encodeDeltaRequest(pairs, true, true, flag);
      expect(parseDeltaRequestWith(body).chosen).toBe(flag);
      const r = await app.request('/v1/chunks/delta', {
        method: 'POST',
        body: new Uint8Array(body),
        headers: { 'content-type': 'application/json' },
      });
      const recs = new DeltaDecoder([id], target.length).push(Buffer.from(await r.arrayBuffer()));
      // Without chosen bases the window shares nothing with the target: it goes whole.
      expect(recs.map((x) => x.kind)).toEqual([flag ? 'chosen' : 'whole']);
    }
    expect(() => parseDeltaRequestWith(Buffer.from('{"pairs":[],"chosen":1}'))).toThrow(
      /"chosen" is not true or false/,
    );
  });
});
