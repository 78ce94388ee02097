import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Chunker } from '../../../src/chunk/fastcdc.js';
import { blake3Hex } from '../../../src/hash/blake3.js';
import {
  chunkWorkerAvailable,
  ChunkWorkerStream,
  type ChunkedBlock,
} from '../../../src/store/chunk-worker.js';
import { errorOf } from './helpers.js';

const small = { minBytes: 1024, avgBytes: 4096, maxBytes: 16384 };

/** `data` in blocks of `blockBytes`, each on its own ArrayBuffer (as readBlocks gives them). */
function blocks(data: Buffer, blockBytes: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += blockBytes) {
    const b = Buffer.allocUnsafeSlow(blockBytes);
    const n = data.copy(b, 0, i, i + blockBytes);
    out.push(n === blockBytes ? b : b.subarray(0, n));
  }
  return out;
}

function inThread(data: Buffer): Array<{ hex: string; bytes: Buffer }> {
  const c = new Chunker(small);
  return [...c.push(data), ...c.finish()].map((p) => ({ hex: blake3Hex(p), bytes: Buffer.from(p) }));
}

function collect(replies: ChunkedBlock[]): Array<{ hex: string; bytes: Buffer }> {
  return replies.flatMap((r) => r.pieces.map((p, k) => ({ hex: r.ids[k]!, bytes: Buffer.from(p) })));
}

describe('chunk worker', () => {
  it('is available here (native BLAKE3), so ingest uses it', () => {
    expect(chunkWorkerAvailable()).toBe(true);
  });

  it('two inputs chunked at once, blocks interleaved, each give exactly the in-thread chunks and ids', async () => {
    const a = randomBytes(300_000);
    const b = randomBytes(200_000);
    const sa = new ChunkWorkerStream(new Chunker(small).options);
    const sb = new ChunkWorkerStream(new Chunker(small).options);
    const ba = blocks(a, 10_000); // many chunks straddle two blocks: the worker's carry-over
    const bb = blocks(b, 7_777);
    const ra: Array<Promise<ChunkedBlock>> = [];
    const rb: Array<Promise<ChunkedBlock>> = [];
    for (let i = 0; i < Math.max(ba.length, bb.length); i++) {
      if (ba[i]) ra.push(sa.push(ba[i]!));
      if (bb[i]) rb.push(sb.push(bb[i]!));
    }
    ra.push(sa.finish());
    rb.push(sb.finish());
    const [got, gotB] = [await Promise.all(ra), await Promise.all(rb)];
    expect(collect(got)).toEqual(inThread(a));
    expect(collect(gotB)).toEqual(inThread(b));
    // Each pushed block came back (transferred); a chunk is a view of it, or (straddling two blocks)
    // a copy on a buffer of its own.
    expect(ba.every((blk) => blk.buffer.byteLength === 0)).toBe(true); // detached here when sent
    const pushed = got.slice(0, -1);
    for (const r of pushed) {
      expect(r.block?.byteLength).toBe(10_000);
      for (const p of r.pieces)
        expect(p.buffer === r.block || p.buffer.byteLength === p.byteLength).toBe(true);
    }
    expect(pushed.filter((r) => r.pieces.some((p) => p.buffer === r.block)).length).toBeGreaterThan(
      pushed.length / 2,
    );
    expect(got.at(-1)!.block).toBeUndefined();
  });

  it('an abandoned input is closed without a reply, and the worker goes on serving others', async () => {
    const s = new ChunkWorkerStream(new Chunker(small).options);
    await s.push(blocks(randomBytes(50_000), 50_000)[0]!);
    s.close();
    s.close(); // twice is harmless
    const data = randomBytes(40_000);
    const t = new ChunkWorkerStream(new Chunker(small).options);
    const replies = [await t.push(blocks(data, 40_000)[0]!), await t.finish()];
    expect(collect(replies)).toEqual(inThread(data));
  });

  it('refuses a block in a SharedArrayBuffer with a clear error, before anything is sent', async () => {
    const s = new ChunkWorkerStream(new Chunker(small).options);
    const err = await errorOf(s.push(new Uint8Array(new SharedArrayBuffer(4096))));
    expect(err.message).toMatch(/SharedArrayBuffer/);
    s.close();
  });
});
