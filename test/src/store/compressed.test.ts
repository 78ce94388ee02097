import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { compress } from '../../../src/compress/zstd.js';
import { blake3Hex } from '../../../src/hash/blake3.js';
import { ChunkStore } from '../../../src/store/chunk-store.js';
import { ingestFile } from '../../../src/store/ingest.js';
import { errorOf, tempDir } from './helpers.js';

/** Compressible bytes: text-like, repeating with variation (about 3-5× with zstd -3). */
function textish(bytes: number, seed = 1): Buffer {
  const words = ['depot', 'sync', 'chunk', 'manifest', 'agent', 'master', 'release', 'version', '\n'];
  const parts: string[] = [];
  let x = seed;
  let n = 0;
  while (n < bytes) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = `${words[x % words.length]}${x % 97} `;
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

function plainChunk(data: Buffer): { id: string; data: Buffer } {
  return { id: blake3Hex(data), data };
}

describe('compressed chunks in the store', () => {
  it('stores a compressible chunk compressed and an incompressible one plain; reads give plain or stored', async () => {
    const store = ChunkStore.open(tempDir());
    const text = plainChunk(textish(60_000));
    const noise = plainChunk(randomBytes(60_000));
    const r = await store.putMany([text, noise]);
    expect(r.written).toBe(2);
    expect(r.bytesWritten).toBe(120_000);
    expect(r.storedBytes).toBeLessThan(60_000 + 30_000);
    expect(store.size(text.id)).toBe(60_000);
    expect((await store.get(text.id)).equals(text.data)).toBe(true);
    expect((await store.get(noise.id)).equals(noise.data)).toBe(true);
    const st = await store.getStored(text.id);
    expect(st.encoding).toBe('zstd');
    expect(st.plainLength).toBe(60_000);
    expect(st.data.length).toBeLessThan(30_000);
    expect((await store.getStored(noise.id)).encoding).toBe('plain');
    const stored = [];
    for await (const rec of store.readMany([text.id, noise.id], { stored: true }))
      stored.push({ enc: rec.encoding, len: rec.data!.length, plain: rec.plainLength });
    expect(stored).toEqual([
      { enc: 'zstd', len: st.data.length, plain: 60_000 },
      { enc: 'plain', len: 60_000, plain: 60_000 },
    ]);
    for await (const rec of store.readMany([text.id], {})) expect(rec.data!.equals(text.data)).toBe(true);
    expect((await store.readRange(text.id, 100, 199)).equals(text.data.subarray(100, 200))).toBe(true);
    expect(store.stats().bytes).toBe(r.storedBytes);
    expect(store.plainBytes()).toBe(120_000);
    await store.close();
  });

  it('compresses at a fast (negative) level, and keeps a chunk whose head is incompressible plain', async () => {
    const store = ChunkStore.open(tempDir(), { compressLevel: -5 });
    const text = plainChunk(textish(60_000, 3));
    // Random first 4 KiB, text after: the trial on the head says "incompressible", so no frame is made.
    const mixed = plainChunk(Buffer.concat([randomBytes(4096), textish(56_000, 4)]));
    await store.putMany([text, mixed]);
    const st = await store.getStored(text.id);
    expect(st.encoding).toBe('zstd');
    expect(st.data.length).toBeLessThan(40_000);
    expect((await store.get(text.id)).equals(text.data)).toBe(true);
    expect((await store.getStored(mixed.id)).encoding).toBe('plain');
    expect((await store.get(mixed.id)).equals(mixed.data)).toBe(true);
    await store.close();
    expect((await errorOf(() => ChunkStore.open(tempDir(), { compressLevel: -8 }))).code).toBe('bad-input');
  });

  it('keeps everything plain at level 0', async () => {
    const store = ChunkStore.open(tempDir(), { compressLevel: 0 });
    const text = plainChunk(textish(60_000));
    expect((await store.putMany([text])).storedBytes).toBe(60_000);
    expect((await store.getStored(text.id)).encoding).toBe('plain');
    await store.close();
  });

  it('putStored accepts a frame from upstream as it came, after decoding it and checking its hash', async () => {
    const store = ChunkStore.open(tempDir());
    const text = textish(50_000, 7);
    const id = blake3Hex(text);
    const frame = compress(text, 9);
    const r = await store.putStored([{ id, encoding: 'zstd', data: frame, plainLength: text.length }]);
    expect(r).toEqual({ written: 1, bytesWritten: 50_000, storedBytes: frame.length });
    const st = await store.getStored(id);
    expect(st.data.equals(frame)).toBe(true); // not recompressed at the store's own level
    expect((await store.get(id)).equals(text)).toBe(true);
    await store.close();
  });

  it('putStored refuses a bomb, a damaged frame, a truncated frame and a wrong id, storing nothing', async () => {
    const store = ChunkStore.open(tempDir());
    const text = textish(50_000, 3);
    const id = blake3Hex(text);
    const frame = compress(text);
    const good = plainChunk(textish(20_000, 4));
    const goodRec = {
      id: good.id,
      encoding: 'zstd' as const,
      data: compress(good.data),
      plainLength: good.data.length,
    };
    // Declared shorter than the frame's output: decoding stops at the cap.
    const bomb = await errorOf(
      store.putStored([goodRec, { id, encoding: 'zstd', data: frame, plainLength: 10_000 }]),
    );
    expect(bomb.code).toBe('too-large');
    expect(bomb.message).toContain(id);
    const damaged = Buffer.from(frame);
    damaged[Math.floor(damaged.length / 2)]! ^= 0xff;
    const bad = await errorOf(
      store.putStored([goodRec, { id, encoding: 'zstd', data: damaged, plainLength: 50_000 }]),
    );
    expect(['corrupt', 'hash-mismatch']).toContain(bad.code);
    const cut = await errorOf(
      store.putStored([
        goodRec,
        { id, encoding: 'zstd', data: frame.subarray(0, frame.length - 20), plainLength: 50_000 },
      ]),
    );
    expect(['truncated', 'corrupt']).toContain(cut.code);
    const other = compress(textish(50_000, 99));
    const wrong = await errorOf(
      store.putStored([goodRec, { id, encoding: 'zstd', data: other, plainLength: 50_000 }]),
    );
    expect(wrong.code).toBe('hash-mismatch');
    expect(store.has(good.id)).toBe(false);
    expect(store.has(id)).toBe(false);
    expect(store.stats().chunks).toBe(0);
    await store.close();
  });

  it('putMany refuses a frame that does not decode to the bytes it came with', async () => {
    const store = ChunkStore.open(tempDir());
    const a = plainChunk(textish(30_000, 5));
    const e = await errorOf(store.putMany([{ ...a, zstd: compress(textish(30_000, 6)) }]));
    expect(e.code).toBe('hash-mismatch');
    expect(store.has(a.id)).toBe(false);
    await store.close();
  });

  it('a damaged stored frame reads as corrupt', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const text = plainChunk(textish(60_000, 8));
    await store.putMany([text]);
    await store.close();
    // Flip a byte in the middle of the record's frame.
    const pack = join(dir, 'chunks-v1', 'packs', 'pack-00000001.dat');
    const { readFileSync } = await import('node:fs');
    const bytes = readFileSync(pack);
    bytes[bytes.length - 100]! ^= 0xff;
    writeFileSync(pack, bytes);
    const again = ChunkStore.open(dir);
    expect((await errorOf(again.get(text.id))).code).toBe('corrupt');
    expect((await errorOf(again.getStored(text.id))).code).toBe('corrupt');
    await again.close();
  });

  it('migrates a store of plain records (schema 1): old chunks read and compact, new ones compress', async () => {
    const dir = tempDir();
    const old = ChunkStore.open(dir, { compressLevel: 0 });
    const a = plainChunk(textish(40_000, 11));
    const b = plainChunk(textish(40_000, 12));
    await old.putMany([a, b]);
    await old.close();
    // Make it exactly what the release before compression wrote: schema 1, no encoding columns.
    const db = new Database(join(dir, 'chunks-v1', 'index.sqlite'));
    db.exec('ALTER TABLE chunks DROP COLUMN plain; ALTER TABLE chunks DROP COLUMN encoding;');
    db.pragma('user_version = 1');
    db.close();

    const store = ChunkStore.open(dir);
    expect((await store.get(a.id)).equals(a.data)).toBe(true);
    expect((await store.getStored(a.id)).encoding).toBe('plain');
    const c = plainChunk(textish(40_000, 13));
    await store.putMany([c]);
    expect((await store.getStored(c.id)).encoding).toBe('zstd');
    // Compaction copies both kinds of record and keeps their encodings.
    const gc = await store.gc((id) => id !== b.id, { graceMs: 0 });
    expect(gc.removed).toBe(1);
    expect((await store.get(a.id)).equals(a.data)).toBe(true);
    expect((await store.get(c.id)).equals(c.data)).toBe(true);
    expect((await store.getStored(c.id)).encoding).toBe('zstd');
    await store.close();
    const check = new Database(join(dir, 'chunks-v1', 'index.sqlite'));
    expect(check.pragma('user_version', { simple: true })).toBe(2);
    check.close();
  });

  it('an ingest of mixed content through the chunk worker and its compression helper stores what in-thread ingest does', async () => {
    // Random and text stretches: replies of several hundred KiB are split between the chunk worker and
    // its helper, and both halves hold compressed and plain chunks.
    const dir = tempDir();
    const file = join(dir, 'mixed.bin');
    const parts: Buffer[] = [];
    for (let i = 0; i < 6; i++) parts.push(i % 2 ? randomBytes(700_000) : textish(900_000, 30 + i));
    const data = Buffer.concat(parts);
    writeFileSync(file, data);
    const store = ChunkStore.open(join(dir, 's1'));
    const r = await ingestFile(store, file, { hashWorker: true });
    const inThread = ChunkStore.open(join(dir, 's2'));
    const r2 = await ingestFile(inThread, file, { hashWorker: false });
    expect(r.chunks.map((c) => c.id)).toEqual(r2.chunks.map((c) => c.id));
    expect(store.stats().bytes).toBe(inThread.stats().bytes);
    expect(store.stats().bytes).toBeLessThan(data.length * 0.6);
    const encodings = new Set<string>();
    for (const c of r.chunks) encodings.add((await store.getStored(c.id)).encoding);
    expect([...encodings].sort()).toEqual(['plain', 'zstd']);
    const back = Buffer.concat(await Promise.all(r.chunks.map((c) => store.get(c.id))));
    expect(back.equals(data)).toBe(true);
    await inThread.close();
    await store.close();
  });

  it('an ingest through the chunk worker compresses on the worker, once', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const file = join(dir, 'in.txt');
    const data = textish(3 * 1024 * 1024, 21);
    writeFileSync(file, data);
    const r = await ingestFile(store, file, { hashWorker: true });
    expect(r.size).toBe(data.length);
    expect(store.stats().bytes).toBeLessThan(data.length / 2);
    const back = Buffer.concat(await Promise.all(r.chunks.map((c) => store.get(c.id))));
    expect(back.equals(data)).toBe(true);
    const inThread = ChunkStore.open(tempDir());
    await ingestFile(inThread, file, { hashWorker: false });
    expect(inThread.stats().bytes).toBe(store.stats().bytes);
    await inThread.close();
    await store.close();
  });
});
