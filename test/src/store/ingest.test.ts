import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChunkStore } from '../../../src/store/chunk-store.js';
import { ingestBuffer, ingestFile } from '../../../src/store/ingest.js';
import { errorOf, tempDir } from './helpers.js';

const small = { minBytes: 1024, avgBytes: 4096, maxBytes: 16384 };

describe('ingest', () => {
  it('round-trips a random file: the stored chunks, in order, reassemble it', async () => {
    const dir = tempDir();
    const file = join(dir, 'input.bin');
    const data = randomBytes(600_000);
    writeFileSync(file, data);
    const store = ChunkStore.open(dir);
    const progress: number[] = [];
    const r = await ingestFile(store, file, { chunker: small, batchBytes: 100_000, onProgress: (n) => progress.push(n) });
    expect(r.size).toBe(data.length);
    expect(r.chunks.length).toBeGreaterThan(20);
    expect(r.chunks.reduce((n, c) => n + c.length, 0)).toBe(data.length);
    expect(r.newBytes).toBe(data.length);
    expect(r.newChunks).toBe(new Set(r.chunks.map((c) => c.id)).size);
    expect(progress.length).toBeGreaterThan(3);
    expect(progress.at(-1)).toBe(data.length);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    const parts = await Promise.all(r.chunks.map((c) => store.get(c.id, { verify: true })));
    expect(Buffer.concat(parts).equals(data)).toBe(true);

    // Again: nothing new to write.
    const again = await ingestFile(store, file, { chunker: small });
    expect(again).toMatchObject({ size: data.length, newChunks: 0, newBytes: 0 });
    expect(again.chunks).toEqual(r.chunks);
    await store.close();
  });

  it('stores a repeated chunk once and an edited copy only adds the changed chunks', async () => {
    const store = ChunkStore.open(tempDir());
    const block = randomBytes(50_000);
    const data = Buffer.concat([block, block, block]);
    const r = await ingestBuffer(store, data, { chunker: small });
    expect(r.newBytes).toBeLessThan(data.length);
    const edited = Buffer.from(data);
    edited[70_000] = edited[70_000]! ^ 0xff;
    const e = await ingestBuffer(store, edited, { chunker: small });
    expect(e.newBytes).toBeGreaterThan(0);
    expect(e.newBytes).toBeLessThanOrEqual(2 * small.maxBytes);
    await store.close();
  });

  it('an empty input has no chunks; a missing file is a not-found error naming it', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    expect(await ingestBuffer(store, Buffer.alloc(0))).toEqual({ size: 0, chunks: [], newChunks: 0, newBytes: 0 });
    const err = await errorOf(ingestFile(store, join(dir, 'nope.bin')));
    expect(err.code).toBe('not-found');
    expect(err.message).toContain('nope.bin');
    expect((await errorOf(ingestBuffer(store, Buffer.alloc(1), { batchBytes: 0 }))).message).toMatch(/batchBytes/);
    await store.close();
  });
});
