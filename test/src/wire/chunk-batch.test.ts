import { describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../../src/errors.js';
import { blake3Hex } from '../../../src/hash/blake3.js';
import { SizedBufferPool } from '../../../src/store/buffer-pool.js';
import { BatchDecoder, encodeRecordHeader, type BatchRecord } from '../../../src/wire/chunk-batch.js';

function chunk(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

const chunks = [chunk(70_000, 1), chunk(1, 2), chunk(65_536, 3), chunk(200_000, 4)];
const ids = chunks.map((c) => blake3Hex(c));
const missingId = 'ab'.repeat(32);
const wire = Buffer.concat([
  ...chunks.slice(0, 2).flatMap((c, i) => [encodeRecordHeader(ids[i]!, c.length), c]),
  encodeRecordHeader(missingId, undefined),
  ...chunks.slice(2).flatMap((c, i) => [encodeRecordHeader(ids[i + 2]!, c.length), c]),
]);
const expected = [ids[0]!, ids[1]!, missingId, ids[2]!, ids[3]!];

function decodeIn(pieceBytes: number, pool?: SizedBufferPool): BatchRecord[] {
  const d = new BatchDecoder(expected, 256 * 1024, 'test batch', pool);
  const out: BatchRecord[] = [];
  for (let at = 0; at < wire.length; at += pieceBytes)
    out.push(...d.push(wire.subarray(at, at + pieceBytes)));
  d.finish();
  return out;
}

describe('chunk batch decoder', () => {
  it('yields the same records whatever the size of the network pieces', () => {
    for (const piece of [1, 7, 16_384, 65_536, wire.length]) {
      const recs = decodeIn(piece);
      expect(recs.map((r) => r.id)).toEqual(expected);
      expect(recs[2]!.data).toBeUndefined();
      expect(recs.filter((r) => r.data).map((r) => blake3Hex(r.data!))).toEqual(ids);
    }
  });

  it('gathers records that span pieces into pooled blocks, and a given-back block is reused', () => {
    const pool = new SizedBufferPool(64 * 1024, 1024 * 1024, 8 * 1024 * 1024);
    const recs = decodeIn(16_384, pool);
    expect(recs.filter((r) => r.data).map((r) => blake3Hex(r.data!))).toEqual(ids);
    // The 1-byte record fits in one piece (a view, no block); the spanning ones came from the pool.
    expect(recs[1]!.block).toBeUndefined();
    const blocks = recs.filter((r) => r.block).map((r) => r.block!);
    expect(blocks.length).toBe(3);
    for (const b of blocks) pool.give(b);
    expect(pool.pooledBytes).toBe(128 * 1024 + 64 * 1024 + 256 * 1024);
    const again = decodeIn(16_384, pool);
    expect(again.filter((r) => r.data).map((r) => blake3Hex(r.data!))).toEqual(ids);
    expect(new Set(again.filter((r) => r.block).map((r) => r.block))).toEqual(new Set(blocks));
  });

  it('refuses a record that was not asked for, in order', () => {
    const d = new BatchDecoder([ids[1]!, ids[0]!], 256 * 1024);
    expect(() => d.push(wire)).toThrow(/record 0 is chunk .*expected/);
  });

  it('refuses more records than requested', () => {
    const d = new BatchDecoder([ids[0]!], 256 * 1024);
    try {
      d.push(wire);
      expect.unreachable();
    } catch (e) {
      expect(isDepotsyncError(e, 'bad-input')).toBe(true);
      expect((e as Error).message).toMatch(/more records than the 1 requested/);
    }
  });

  it('cuts a record that declares more than the limit before reading it (endless data)', () => {
    const d = new BatchDecoder([ids[3]!], 100_000);
    try {
      d.push(encodeRecordHeader(ids[3]!, 200_000));
      expect.unreachable();
    } catch (e) {
      expect(isDepotsyncError(e, 'too-large')).toBe(true);
    }
  });

  it('says how far a stream cut short got', () => {
    const d = new BatchDecoder(expected, 256 * 1024);
    d.push(wire.subarray(0, 70_080));
    expect(d.received).toBe(2);
    expect(() => d.finish()).toThrow(/stream ended after 2 of 5 chunks/);
  });
});
