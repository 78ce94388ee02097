import { randomBytes } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blake3Hex } from '../../../src/hash/blake3.js';
import { ChunkStore } from '../../../src/store/chunk-store.js';
import { chunkWorkerAvailable } from '../../../src/store/chunk-worker.js';
import { ingestBuffer, ingestFile } from '../../../src/store/ingest.js';
import { errorOf, failIndexCommit, tempDir } from './helpers.js';

const small = { minBytes: 1024, avgBytes: 4096, maxBytes: 16384 };

describe('ingest', () => {
  it('round-trips a random file: the stored chunks, in order, reassemble it', async () => {
    const dir = tempDir();
    const file = join(dir, 'input.bin');
    const data = randomBytes(600_000);
    writeFileSync(file, data);
    const store = ChunkStore.open(dir);
    const progress: number[] = [];
    const r = await ingestFile(store, file, {
      chunker: small,
      batchBytes: 100_000,
      checkpointBytes: 100_000,
      onProgress: (n) => progress.push(n),
    });
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
    expect(await ingestBuffer(store, Buffer.alloc(0))).toEqual({
      size: 0,
      chunks: [],
      newChunks: 0,
      newBytes: 0,
    });
    const err = await errorOf(ingestFile(store, join(dir, 'nope.bin')));
    expect(err.code).toBe('not-found');
    expect(err.message).toContain('nope.bin');
    expect((await errorOf(ingestBuffer(store, Buffer.alloc(1), { batchBytes: 0 }))).message).toMatch(
      /batchBytes/,
    );
    await store.close();
  });

  describe('pipelined (hash worker, recycled read blocks)', () => {
    // Many 64 KiB read blocks, small chunks (so thousands of them, some straddling two blocks), and
    // batches of a few blocks (so blocks go back to the pool and are read into again while later
    // batches are still being written: a block reused too early would corrupt stored chunks).
    const SIZE = 3 * 1024 * 1024 + 123_457;
    const opts = { chunker: small, batchBytes: 200_000, checkpointBytes: 200_000, readBlockBytes: 64 * 1024 };

    it('the worker is available here (native BLAKE3), so these tests exercise it', () => {
      expect(chunkWorkerAvailable()).toBe(true);
    });

    it('gives exactly the result of the in-thread ingest, and the stored chunks reassemble the file', async () => {
      const dir = tempDir();
      const file = join(dir, 'input.bin');
      const data = randomBytes(SIZE);
      writeFileSync(file, data);
      const a = ChunkStore.open(join(dir, 'a'));
      const b = ChunkStore.open(join(dir, 'b'));
      const progress: number[] = [];
      const piped = await ingestFile(a, file, {
        ...opts,
        hashWorker: true,
        onProgress: (n) => progress.push(n),
      });
      const plain = await ingestFile(b, file, { ...opts, hashWorker: false });
      expect(piped).toEqual(plain);
      expect(piped.chunks.length).toBeGreaterThan(500);
      expect(piped.newBytes).toBe(SIZE);
      expect(progress.at(-1)).toBe(SIZE);
      expect(progress).toEqual([...progress].sort((x, y) => x - y));
      // And both match chunking the bytes in memory.
      const mem = await ingestBuffer(ChunkStore.open(join(dir, 'c')), data, opts);
      expect(mem.chunks).toEqual(piped.chunks);
      // Every id is the BLAKE3 of the bytes the store holds for it, in order: nothing was overwritten.
      const parts: Buffer[] = [];
      for (const c of piped.chunks) {
        const bytes = await a.get(c.id, { verify: true });
        expect(blake3Hex(bytes)).toBe(c.id);
        parts.push(bytes);
      }
      expect(Buffer.concat(parts).equals(data)).toBe(true);
      // Again into the filled store: nothing new.
      expect(await ingestFile(a, file, { ...opts, hashWorker: true })).toMatchObject({
        newChunks: 0,
        newBytes: 0,
        chunks: piped.chunks,
      });
      await Promise.all([a.close(), b.close()]);
    });

    it('a crash between a batch fsync and its index commit fails the ingest and leaves a consistent store', async () => {
      const dir = tempDir();
      const file = join(dir, 'input.bin');
      const data = randomBytes(SIZE);
      writeFileSync(file, data);
      const store = ChunkStore.open(dir);
      const heal = failIndexCommit(dir, 'simulated crash after the pack fsync, before the index commit', 5);
      await expect(ingestFile(store, file, { ...opts, hashWorker: true })).rejects.toThrow(/simulated crash/);
      heal();
      const kept = store.stats();
      expect(kept.chunks).toBeGreaterThan(0); // the batches before the failed one are durable
      expect(kept.bytes).toBeLessThan(SIZE);
      await store.close();

      // Reopen (as after a restart): the uncommitted tail is dropped, every indexed chunk reads back
      // and verifies, and ingesting again stores exactly what was missing.
      const again = ChunkStore.open(dir);
      const pack = join(dir, 'chunks-v1', 'packs', 'pack-00000001.dat');
      expect(statSync(pack).size).toBe(again.stats().packBytes);
      const r = await ingestFile(again, file, { ...opts, hashWorker: true });
      expect(r.newBytes).toBe(SIZE - kept.bytes);
      const parts = await Promise.all(r.chunks.map((c) => again.get(c.id, { verify: true })));
      expect(Buffer.concat(parts).equals(data)).toBe(true);
      await again.close();
    });

    it('a missing file is a not-found error naming it, with or without the worker', async () => {
      const dir = tempDir();
      const store = ChunkStore.open(dir);
      for (const hashWorker of [true, false, undefined]) {
        const err = await errorOf(ingestFile(store, join(dir, 'gone.bin'), { hashWorker }));
        expect(err.code).toBe('not-found');
        expect(err.message).toContain('gone.bin');
      }
      await store.close();
    });
  });
});
