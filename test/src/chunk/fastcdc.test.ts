import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  chunkFile,
  chunkStream,
  Chunker,
  DEFAULT_CHUNKER_OPTIONS,
  type ChunkerOptions,
} from '../../../src/chunk/fastcdc.js';
import { GEAR, GEAR_SEED } from '../../../src/chunk/gear.js';
import { blake3Hex } from '../../../src/hash/blake3.js';
import { isDepotsyncError } from '../../../src/errors.js';

/** Fast seeded pseudo-random bytes (xorshift32 over 32-bit words). */
function randomBytes(len: number, seed: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(len / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return new Uint8Array(words.buffer, 0, len);
}

/** Chunk `data` pushing reads of `readBytes`. */
function chunkAll(data: Uint8Array, readBytes: number, opts: Partial<ChunkerOptions> = {}): Uint8Array[] {
  const c = new Chunker(opts);
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += readBytes) out.push(...c.push(data.subarray(i, i + readBytes)));
  out.push(...c.finish());
  return out;
}

const lengths = (chunks: Uint8Array[]): number[] => chunks.map((c) => c.length);

function concat(chunks: Uint8Array[]): Buffer {
  return Buffer.concat(chunks);
}

async function* from(parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p;
}

const dir = mkdtempSync(join(tmpdir(), 'depotsync-fastcdc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MiB = 1024 * 1024;

describe('Chunker: determinism and reassembly', () => {
  it('gives identical chunks for 1 B, 4 KiB, 1 MiB and odd-sized reads', () => {
    const data = randomBytes(2 * MiB, 1);
    const whole = lengths(chunkAll(data, data.length));
    expect(whole.length).toBeGreaterThan(10);
    for (const readBytes of [1, 4096, MiB, 65_537, 16_383]) {
      expect(lengths(chunkAll(data, readBytes)), `reads of ${readBytes} B`).toEqual(whole);
    }
  });

  it('concatenates back to the input, with every chunk but the last within [min, max]', () => {
    const data = randomBytes(16 * MiB + 12_345, 2);
    const chunks = chunkAll(data, 4096);
    expect(concat(chunks).equals(Buffer.from(data.buffer, data.byteOffset, data.length))).toBe(true);
    const { minBytes, maxBytes } = DEFAULT_CHUNKER_OPTIONS;
    chunks.slice(0, -1).forEach((c, i) => {
      expect(c.length, `chunk ${i}`).toBeGreaterThanOrEqual(minBytes);
      expect(c.length, `chunk ${i}`).toBeLessThanOrEqual(maxBytes);
    });
    expect(chunks.at(-1)!.length).toBeLessThanOrEqual(maxBytes);
    const mean = data.length / chunks.length;
    expect(mean).toBeGreaterThan(48 * 1024);
    expect(mean).toBeLessThan(96 * 1024);
  });

  it('forces a cut at maxBytes when the content never qualifies (all zeros)', () => {
    const opts = { minBytes: 256, avgBytes: 1024, maxBytes: 4096 };
    const chunks = chunkAll(new Uint8Array(10_000), 333, opts);
    expect(lengths(chunks)).toEqual([4096, 4096, 1808]);
  });

  it.each([
    ['Uint8Array', (n: number) => new Uint8Array(n)],
    ['Buffer', (n: number) => Buffer.alloc(n)],
  ])('returns copies: reusing the pushed %s does not change returned chunks', (_name, alloc) => {
    const data = randomBytes(2 * MiB, 3);
    const READ = 300_000; // larger than maxBytes: some chunks lie wholly inside one push
    const expected = lengths(chunkAll(data, READ)).length;
    const c = new Chunker();
    const reused = alloc(READ);
    const out: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += READ) {
      const piece = data.subarray(i, i + READ);
      reused.set(piece);
      out.push(...c.push(reused.subarray(0, piece.length)));
      reused.fill(0xee);
    }
    out.push(...c.finish());
    expect(out.length).toBe(expected);
    expect(concat(out).equals(Buffer.from(data))).toBe(true);
  });

  it('gives zero chunks for empty input, and can be reused after finish', () => {
    const c = new Chunker();
    expect(c.push(new Uint8Array(0))).toEqual([]);
    expect(c.finish()).toEqual([]);
    const data = randomBytes(300_000, 4);
    const first = [...c.push(data), ...c.finish()];
    const second = [...c.push(data), ...c.finish()];
    expect(lengths(second)).toEqual(lengths(first));
  });
});

describe('Chunker: content-defined boundaries', () => {
  it('keeps >= 95% of chunks after inserting one byte at the start of a 64 MiB file', () => {
    const data = randomBytes(64 * MiB, 5);
    const shifted = new Uint8Array(data.length + 1);
    shifted[0] = 0x42;
    shifted.set(data, 1);
    const before = chunkAll(data, MiB).map(blake3Hex);
    const after = new Set(chunkAll(shifted, MiB).map(blake3Hex));
    const shared = before.filter((id) => after.has(id)).length;
    expect(shared / before.length).toBeGreaterThanOrEqual(0.95);
  });

  it('is pinned: the gear table and the boundaries of a known input never change', () => {
    // Chunk ids depend on these; a change here would make every stored chunk useless for dedup.
    expect(GEAR_SEED).toBe(0x67656172);
    expect(Array.from(GEAR.subarray(0, 4), (v) => v >>> 0)).toEqual([
      0x98299b9d, 0xb3d47618, 0xbb4a3e94, 0x3f778,
    ]);
    const data = randomBytes(4 * MiB, 0x5eed);
    expect(lengths(chunkAll(data, MiB)).slice(0, 12)).toEqual([
      114987, 93832, 110003, 87683, 17254, 61627, 87167, 68880, 70280, 75936, 33161, 71969,
    ]);
    const small = { minBytes: 256, avgBytes: 1024, maxBytes: 4096 };
    expect(lengths(chunkAll(data.subarray(0, 20_000), 777, small))).toEqual([
      1408, 1138, 1221, 1122, 1222, 1062, 1331, 1117, 1270, 1185, 1046, 516, 1095, 1688, 1134, 1096, 1184,
      165,
    ]);
  });
});

describe('options', () => {
  const bad: Array<[Partial<ChunkerOptions>, RegExp]> = [
    [{ avgBytes: 60_000 }, /avgBytes must be a power of two .* got 60000/],
    [{ avgBytes: 128 }, /avgBytes must be a power of two from 256 .* got 128/],
    [{ minBytes: 65_536 }, /minBytes must be at least 64 and less than avgBytes \(65536\), got 65536/],
    [{ minBytes: 10 }, /minBytes .* got 10/],
    [{ maxBytes: 65_536 }, /maxBytes must be greater than avgBytes \(65536\) .* got 65536/],
    [{ maxBytes: 2 ** 31 }, /maxBytes .* at most 1073741824, got 2147483648/],
    [{ minBytes: 1.5 }, /minBytes must be an integer number of bytes, got 1.5/],
    [{ avgBytes: '65536' as unknown as number }, /avgBytes must be an integer number of bytes, got "65536"/],
    [{ maxBytes: 1 }, /maxBytes must be greater than avgBytes \(65536\) and at most 1073741824, got 1/],
    [{ avgSize: 4 } as unknown as Partial<ChunkerOptions>, /unknown option "avgSize"/],
  ];
  for (const [opts, message] of bad) {
    it(`rejects ${JSON.stringify(opts)}`, () => {
      let err: unknown;
      try {
        new Chunker(opts);
      } catch (e) {
        err = e;
      }
      expect(isDepotsyncError(err, 'bad-input')).toBe(true);
      expect((err as Error).message).toMatch(message);
    });
  }

  it('reports every problem at once', () => {
    expect(() => new Chunker({ minBytes: 10, maxBytes: 1 })).toThrow(/minBytes.*; maxBytes/);
  });

  it('accepts custom sizes and honours them', () => {
    const opts = { minBytes: 2048, avgBytes: 8192, maxBytes: 32_768 };
    const chunks = chunkAll(randomBytes(2 * MiB, 6), 10_000, opts);
    chunks.slice(0, -1).forEach((c) => {
      expect(c.length).toBeGreaterThanOrEqual(2048);
      expect(c.length).toBeLessThanOrEqual(32_768);
    });
    expect(new Chunker(opts).options).toEqual(opts);
  });
});

describe('chunkStream and chunkFile', () => {
  it('yield the same chunks as the Chunker, with contiguous offsets', async () => {
    const data = randomBytes(3 * MiB + 7, 7);
    const expected = chunkAll(data, MiB);
    const parts = [data.subarray(0, 1000), data.subarray(1000, 2 * MiB), data.subarray(2 * MiB)];
    const file = join(dir, 'input.bin');
    writeFileSync(file, data);
    for (const source of [chunkStream(from(parts)), chunkFile(file)]) {
      let offset = 0;
      const got: Uint8Array[] = [];
      for await (const c of source) {
        expect(c.offset).toBe(offset);
        expect(c.length).toBe(c.data.length);
        offset += c.length;
        got.push(c.data);
      }
      expect(offset).toBe(data.length);
      expect(got.map(blake3Hex)).toEqual(expected.map(blake3Hex));
    }
  });

  it('yield nothing for an empty source or file', async () => {
    const empty = join(dir, 'empty.bin');
    writeFileSync(empty, new Uint8Array(0));
    for (const source of [chunkStream(from([])), chunkFile(empty)]) {
      const got = [];
      for await (const c of source) got.push(c);
      expect(got).toEqual([]);
    }
  });

  it('name the file that cannot be read', async () => {
    const missing = join(dir, 'missing.bin');
    const err = await (async () => {
      for await (const c of chunkFile(missing)) void c;
    })().catch((e: unknown) => e);
    expect(isDepotsyncError(err, 'not-found')).toBe(true);
    expect((err as Error).message).toContain(missing);
  });

  it('reject a source that yields strings', async () => {
    const strings = (async function* () {
      yield 'text' as unknown as Uint8Array;
    })();
    await expect(chunkStream(strings).next()).rejects.toThrow(/yielded string, expected bytes/);
  });

  it('check options before reading', () => {
    expect(() => chunkFile(join(dir, 'missing.bin'), { avgBytes: 3 })).toThrow(/avgBytes/);
  });
});
