import { closeSync, openSync, readdirSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChunkStore, type ReadManyRecord } from '../../../src/store/chunk-store.js';
import { RECORD_HEADER_BYTES } from '../../../src/store/pack-format.js';
import { chunk, tempDir } from './helpers.js';

async function all(
  it: AsyncIterable<ReadManyRecord>,
): Promise<Array<{ id: string; data?: string; problem?: string }>> {
  const out: Array<{ id: string; data?: string; problem?: string }> = [];
  for await (const r of it)
    out.push({
      id: r.id,
      ...(r.data ? { data: r.data.toString('hex') } : {}),
      ...(r.problem ? { problem: (r.problem as { code?: string }).code ?? 'error' } : {}),
    });
  return out;
}

describe('ChunkStore.readMany (batch serving)', () => {
  it('yields every chunk in the order asked, across runs, packs and repeats, with a small run limit', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir, { maxPackBytes: 300_000 });
    const chunks = Array.from({ length: 12 }, (_, i) => chunk(20_000 + i * 997));
    for (let i = 0; i < chunks.length; i += 3) await store.putMany(chunks.slice(i, i + 3));
    const order = [0, 1, 2, 5, 4, 3, 6, 6, 11, 7, 8, 9, 10, 0].map((i) => chunks[i]!);
    for (const runBytes of [1, 50_000, 1 << 20]) {
      const got = await all(
        store.readMany(
          order.map((c) => c.id),
          { verify: true, runBytes, aheadRuns: 2 },
        ),
      );
      expect(got).toEqual(order.map((c) => ({ id: c.id, data: Buffer.from(c.data).toString('hex') })));
    }
    await store.close();
  });

  it('reports a missing and a corrupt chunk without stopping the others', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const [a, b, c] = [chunk(30_000), chunk(40_000), chunk(50_000)];
    const absent = chunk(10);
    await store.putMany([a!, b!, c!]);
    // Flip one byte inside b's data on disk (records are back to back: header a, a, header b, b, …).
    const packDir = join(dir, 'chunks-v1', 'packs');
    const pack = join(packDir, readdirSync(packDir)[0]!);
    const at = 8 + RECORD_HEADER_BYTES + 30_000 + RECORD_HEADER_BYTES + 123;
    const fd = openSync(pack, 'r+');
    const one = Buffer.alloc(1);
    readSync(fd, one, 0, 1, at);
    one[0] = one[0]! ^ 0x01;
    writeSync(fd, one, 0, 1, at);
    closeSync(fd);

    const got = await all(store.readMany([a!.id, b!.id, absent.id, c!.id], { verify: true }));
    expect(got).toEqual([
      { id: a!.id, data: Buffer.from(a!.data).toString('hex') },
      { id: b!.id, problem: 'corrupt' },
      { id: absent.id, problem: 'not-found' },
      { id: c!.id, data: Buffer.from(c!.data).toString('hex') },
    ]);
    // Unverified reads hand out the damaged bytes (the caller asked not to check).
    const raw = await all(store.readMany([b!.id], { verify: false }));
    expect(raw[0]!.data).toBeDefined();
    expect(raw[0]!.data).not.toBe(Buffer.from(b!.data).toString('hex'));
    await store.close();
  });

  it('refuses a malformed id before reading anything', async () => {
    const store = ChunkStore.open(tempDir());
    await expect(all(store.readMany(['zz'], { verify: true }))).rejects.toThrow(/chunk id/);
    await store.close();
  });
});

describe('ChunkStore durable: false (a verified cache)', () => {
  it('stores and reads back like a durable store, and refuses to be both non-durable and unverified', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir, { durable: false });
    const a = chunk(70_000);
    expect(await store.putMany([a])).toEqual({ written: 1, bytesWritten: 70_000, storedBytes: 70_000 });
    expect((await store.get(a.id, { verify: true })).equals(a.data)).toBe(true);
    await store.close();
    const again = ChunkStore.open(dir);
    expect(again.has(a.id)).toBe(true);
    await again.close();
    expect(() => ChunkStore.open(tempDir(), { durable: false, verifyOnRead: false })).toThrow(
      /not durable must verify on read/,
    );
    expect(() => ChunkStore.open(tempDir(), { durable: 'yes' as unknown as boolean })).toThrow(
      /durable must be a boolean/,
    );
  });
});
