import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DepotsyncError, isDepotsyncError } from '../../../src/errors.js';
import { blake3Hex } from '../../../src/hash/blake3.js';
import { silentLogger } from '../../../src/log.js';
import type { StreamResponse } from '../../../src/net/client.js';
import { HttpError } from '../../../src/net/http-error.js';
import {
  downloadChunks,
  type ChunkSource,
  type ChunkWant,
  type DownloadOptions,
} from '../../../src/read/chunk-download.js';
import { explainRefusal, fatalRefusal } from '../../../src/read/refusal.js';
import { SizedBufferPool } from '../../../src/store/buffer-pool.js';
import { compress } from '../../../src/compress/zstd.js';
import {
  BATCH_CONTENT_TYPE_V2,
  encodeRecordHeader,
  encodeRecordHeaderV2,
} from '../../../src/wire/chunk-batch.js';

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

const DATA = Array.from({ length: 24 }, (_, i) => bytes(20_000 + i * 1000, i));
const NEEDS: ChunkWant[] = DATA.map((d) => ({ id: blake3Hex(d), length: d.length }));
const BY_ID = new Map(NEEDS.map((n, i) => [n.id, DATA[i]!]));

interface Behaviour {
  /** Chunks answered with other bytes. */
  corrupt?: Set<string>;
  /** Chunks answered as missing. */
  lacks?: Set<string>;
  /** The first `n` requests end after this many records (a cut stream). */
  cut?: { records: number; times: number };
  /** The request is refused with this error. */
  refuse?: unknown;
  /** The body never ends after its first record (a stalled source). */
  stall?: boolean;
  /** Answer a request that takes zstd in format 2, every chunk compressed; `always`: whatever is asked. */
  zstd?: 'asked' | 'always';
  /** Compressed records that decode to more than their chunk (a bomb). */
  bomb?: Set<string>;
  /** Compressed records with a flipped byte. */
  damaged?: Set<string>;
  /** Compressed records cut short. */
  cutFrame?: Set<string>;
}

/** The compressed record a source sends for `id` (bad as its behaviour says). */
function frameOf(id: string, b: Behaviour): Buffer {
  const plain = BY_ID.get(id)!;
  if (b.bomb?.has(id)) return compress(Buffer.alloc(plain.length * 50, 1));
  const f = compress(plain);
  if (b.damaged?.has(id)) f[Math.floor(f.length / 2)]! ^= 0xff;
  if (b.cutFrame?.has(id)) return f.subarray(0, f.length - 30);
  return f;
}

/** A source speaking the real batch wire format, in pieces of 4 KiB (records span pieces). */
function source(name: string, b: Behaviour = {}): ChunkSource & { asked: string[][] } {
  const asked: string[][] = [];
  return {
    name,
    asked,
    async batch(
      ids: readonly string[],
      _maxBytes: number,
      signal: AbortSignal,
      opts?: { zstd: boolean },
    ): Promise<StreamResponse> {
      asked.push([...ids]);
      const v2 = b.zstd === 'always' || (b.zstd === 'asked' && opts?.zstd === true);
      if (b.refuse) throw b.refuse;
      const parts: Buffer[] = [];
      let records = ids.length;
      if (b.cut && b.cut.times > 0) {
        b.cut.times--;
        records = Math.min(records, b.cut.records);
      }
      for (const id of ids.slice(0, records)) {
        if (v2) {
          if (b.lacks?.has(id)) {
            parts.push(encodeRecordHeaderV2(id, undefined, 'plain', 0));
            continue;
          }
          const f = frameOf(id, b);
          parts.push(encodeRecordHeaderV2(id, f.length, 'zstd', BY_ID.get(id)!.length), f);
          continue;
        }
        if (b.lacks?.has(id)) {
          parts.push(encodeRecordHeader(id, undefined));
          continue;
        }
        const data = b.corrupt?.has(id) ? Buffer.alloc(BY_ID.get(id)!.length, 7) : BY_ID.get(id)!;
        parts.push(encodeRecordHeader(id, data.length), data);
      }
      const wire = Buffer.concat(parts);
      const pieces: Buffer[] = [];
      for (let at = 0; at < wire.length; at += 4096) pieces.push(wire.subarray(at, at + 4096));
      const body = b.stall ? new Readable({ read() {} }) : Readable.from(pieces, { objectMode: false });
      if (b.stall) body.push(pieces[0]);
      signal.addEventListener(
        'abort',
        () => body.destroy(new DepotsyncError('network', `${name}: aborted`)),
        { once: true },
      );
      return { status: 200, headers: v2 ? { 'content-type': BATCH_CONTENT_TYPE_V2 } : {}, body };
    },
  };
}

function run(sources: ChunkSource[], extra: Partial<DownloadOptions<ChunkWant, ChunkSource>> = {}) {
  const delivered: string[] = [];
  const failed: Array<{ source: string; error: unknown }> = [];
  const p = downloadChunks<ChunkWant, ChunkSource>({
    needs: NEEDS,
    sources,
    concurrency: 3,
    batchMaxBytes: 100_000,
    batchMaxChunks: 4,
    attempts: 1,
    deliverBytes: 50_000,
    deliver: async (group) => {
      for (const g of group) {
        // Only verified bytes arrive here.
        expect(blake3Hex(g.chunk.data)).toBe(g.need.id);
        delivered.push(g.need.id);
      }
    },
    onSourceFailed: (s, error) => failed.push({ source: s.name, error }),
    log: silentLogger(),
    ...extra,
  });
  return { p, delivered, failed };
}

describe('chunk download engine', () => {
  it('delivers every chunk once, verified, with records spanning pieces gathered into recycled buffers', async () => {
    const pool = new SizedBufferPool(16 * 1024, 64 * 1024, 8 * 1024 * 1024);
    const a = source('a');
    const { p, delivered, failed } = run([a], { pool });
    const bySource = await p;
    expect([...delivered].sort()).toEqual(NEEDS.map((n) => n.id).sort());
    expect(bySource.get('a')).toBe(NEEDS.reduce((s, n) => s + n.length, 0));
    expect(failed).toEqual([]);
    expect(pool.pooledBytes).toBeGreaterThan(0); // blocks came back after delivery
  });

  it('a forged chunk is never delivered: the rest of its batch is kept, the source fails, the next one sends it', async () => {
    const bad = NEEDS[5]!.id;
    const a = source('a', { corrupt: new Set([bad]) });
    const b = source('b');
    const { p, delivered, failed } = run([a, b]);
    const bySource = await p;
    expect(delivered.filter((id) => id === bad)).toHaveLength(1);
    expect(b.asked.flat()).toContain(bad);
    // The chunks after the forged one in its batch came from a (delivered before the batch failed).
    expect(b.asked.flat()).not.toContain(NEEDS[6]!.id);
    expect(failed.map((f) => f.source)).toEqual(['a']);
    expect(isDepotsyncError(failed[0]!.error, 'hash-mismatch')).toBe(true);
    expect((failed[0]!.error as Error).message).toContain(bad);
    expect(bySource.get('b')).toBeGreaterThan(0);
  });

  it('chunks a source lacks go to the next source without blaming it', async () => {
    const gone = new Set([NEEDS[2]!.id, NEEDS[9]!.id]);
    const a = source('a', { lacks: gone });
    const b = source('b');
    const { p, delivered, failed } = run([a, b]);
    await p;
    expect(new Set(delivered).size).toBe(NEEDS.length);
    expect(failed).toEqual([]);
    expect(b.asked.flat().sort()).toEqual([...gone].sort());
  });

  it('when no source has a chunk: not-found, and no source is blamed', async () => {
    const gone = NEEDS[3]!.id;
    const a = source('a', { lacks: new Set([gone]) });
    const { p, failed } = run([a]);
    const e = await p.catch((x: unknown) => x);
    expect(isDepotsyncError(e, 'not-found')).toBe(true);
    expect((e as Error).message).toContain(gone);
    expect(failed).toEqual([]);
  });

  it('retries a cut batch at the same source with backoff, asking only for what did not arrive', async () => {
    const a = source('a', { cut: { records: 1, times: 2 } });
    const waits: number[] = [];
    const { p, delivered, failed } = run([a], {
      concurrency: 1,
      attempts: 3,
      retryDelayMs: 10,
      sleep: async (ms) => void waits.push(ms),
      retryable: (e) => isDepotsyncError(e, 'truncated'),
    });
    await p;
    expect(new Set(delivered).size).toBe(NEEDS.length);
    expect(delivered).toHaveLength(NEEDS.length); // nothing delivered twice
    expect(waits).toEqual([10, 20]);
    expect(a.asked[1]).toEqual(a.asked[0]!.slice(1));
    expect(a.asked[2]).toEqual(a.asked[1]!.slice(1));
    expect(failed).toEqual([]);
  });

  it('after its last attempt a source fails; with none left the download ends with its error', async () => {
    const a = source('a', { cut: { records: 1, times: 100 } });
    const { p, failed } = run([a], {
      attempts: 2,
      retryable: (e) => isDepotsyncError(e, 'truncated'),
      sleep: async () => undefined,
    });
    const e = await p.catch((x: unknown) => x);
    expect(isDepotsyncError(e, 'truncated')).toBe(true);
    expect(failed.map((f) => f.source)).toEqual(['a']);
  });

  it('a failing sink (disk) ends the download at once with its error; no source is blamed', async () => {
    const a = source('a');
    const b = source('b');
    const full = new DepotsyncError('io', 'disk full');
    const { p, failed } = run([a, b], { deliver: async () => Promise.reject(full) });
    expect(await p.catch((x: unknown) => x)).toBe(full);
    expect(failed).toEqual([]);
    expect(b.asked).toEqual([]);
  });

  it('a fatal error (a refused certificate) stops the download without asking the next source', async () => {
    const refused = new HttpError('forbidden', 'certificate revoked', 403, 'revoked', undefined);
    const a = source('a', { refuse: refused });
    const b = source('b');
    const { p } = run([a, b], { fatal: (e) => fatalRefusal(e) !== undefined });
    expect(await p.catch((x: unknown) => x)).toBe(refused);
    expect(b.asked).toEqual([]);
  });

  it('a source that stalls past the request deadline fails with a timeout; the next one serves', async () => {
    const a = source('a', { stall: true });
    const b = source('b');
    const { p, delivered, failed } = run([a, b], { requestTimeoutMs: 150 });
    await p;
    expect(new Set(delivered).size).toBe(NEEDS.length);
    expect(failed.map((f) => f.source)).toEqual(['a']);
    expect(isDepotsyncError(failed[0]!.error, 'timeout')).toBe(true);
    expect((failed[0]!.error as Error).message).toMatch(/not complete after 150 ms/);
  });

  it('names every source when none could deliver (the caller words it)', async () => {
    const a = source('a', { corrupt: new Set(NEEDS.map((n) => n.id)) });
    const b = source('b', { refuse: new DepotsyncError('network', 'connection refused') });
    const { p } = run([a, b], {
      exhausted: (left, failed) =>
        new DepotsyncError('network', `${left.length} left; ${[...failed.keys()].join(', ')} failed`),
    });
    const e = await p.catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/left; a, b failed/);
  });
});

describe('refusal explanation', () => {
  it('a 403 revoked becomes one clear error worded for the reader; fatal for every source', () => {
    const http = new HttpError('forbidden', 'HTTP 403', 403, 'revoked', undefined);
    const agent = explainRefusal(http, 'agent', 'depot-1 (https://d1) refused this agent') as DepotsyncError;
    expect(agent.code).toBe('forbidden');
    expect(agent.message).toMatch(/^depot-1 \(https:\/\/d1\) refused this agent: revoked/);
    expect(agent.hint).toMatch(/revoked.*depotsync agent init/);
    const depot = explainRefusal(http, 'depot', 'sync refused by upstream https://m') as DepotsyncError;
    expect(depot.hint).toMatch(/depotsync depot init/);
    expect(fatalRefusal(agent)).toBe('revoked');
  });

  it('a 401 without a server code is "unauthorized", not fatal (another source may accept it); other errors pass unchanged', () => {
    const http = new HttpError('unauthorized', 'HTTP 401', 401, undefined, undefined);
    const e = explainRefusal(http, 'depot', 'sync refused by upstream https://m') as DepotsyncError;
    expect(e.code).toBe('unauthorized');
    expect(e.message).toMatch(/: unauthorized \(HTTP 401\)$/);
    expect(fatalRefusal(e)).toBeUndefined();
    const other = new HttpError('not-found', 'HTTP 404', 404, undefined, undefined);
    expect(explainRefusal(other, 'agent', 'x')).toBe(other);
  });

  it('takes compressed records: decoded within the listed length, verified, and delivered with their frame', async () => {
    const a = source('a', { zstd: 'asked' });
    const frames: Array<Uint8Array | null | undefined> = [];
    const { p, delivered, failed } = run([a], {
      deliver: async (group) => {
        for (const g of group) {
          expect(blake3Hex(g.chunk.data)).toBe(g.need.id);
          frames.push(g.chunk.zstd);
          delivered.push(g.need.id);
        }
      },
    });
    const bySource = await p;
    expect(delivered.length).toBe(NEEDS.length);
    expect(failed).toEqual([]);
    expect(frames.every((f) => f instanceof Uint8Array)).toBe(true);
    expect(bySource.get('a')).toBe(NEEDS.reduce((s, n) => s + n.length, 0));
  });

  for (const [what, b] of [
    ['a bomb (decodes past the listed length)', { bomb: new Set([NEEDS[3]!.id]) }],
    ['a damaged frame', { damaged: new Set([NEEDS[3]!.id]) }],
    ['a truncated frame', { cutFrame: new Set([NEEDS[3]!.id]) }],
  ] as const) {
    it(`${what}: nothing wrong delivered; the source is asked again for plain records`, async () => {
      const a = source('a', { zstd: 'asked', ...b });
      const { p, delivered, failed } = run([a]);
      await p;
      expect([...delivered].sort()).toEqual(NEEDS.map((n) => n.id).sort());
      expect(failed).toEqual([]);
      expect(a.asked.length).toBeGreaterThan(Math.ceil(NEEDS.length / 4)); // the retry
    });
  }

  it('a source that keeps sending a bomb fails with a typed too-large error, nothing of it delivered', async () => {
    const bomb = NEEDS[3]!.id;
    const a = source('a', { zstd: 'always', bomb: new Set([bomb]) });
    const { p, delivered } = run([a], { concurrency: 1 });
    const e = await p.catch((x: unknown) => x);
    expect(isDepotsyncError(e, 'too-large')).toBe(true);
    expect((e as Error).message).toContain(bomb);
    expect(delivered).not.toContain(bomb);
  });
});
