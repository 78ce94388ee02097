import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChunkStore, hashedChunk } from '../../../src/store/chunk-store.js';
import { capturingLogger, failIndexCommit, tempDir } from './helpers.js';

const groupsOf = (n: number, per: number, bytes: number) =>
  Array.from({ length: n }, () => Array.from({ length: per }, () => hashedChunk(randomBytes(bytes))));

async function* feed<T>(items: T[], failAt?: number): AsyncGenerator<T> {
  for (const [i, x] of items.entries()) {
    if (i === failAt) throw new Error('the producer failed');
    yield x;
  }
}

describe('ChunkStore.putStream (checkpointed appends for an ingest)', () => {
  it('stores every group, commits once per checkpoint, skips repeats and chunks already stored', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const groups = groupsOf(6, 4, 30_000);
    await store.putMany(groups[0]!.slice(0, 2)); // already stored: skipped (and touched), not written twice
    const written: number[] = [];
    const durable: number[] = [];
    const r = await store.putStream(feed([...groups, [groups[1]![0]!]]), {
      checkpointBytes: 200_000,
      onWritten: (i) => written.push(i),
      onDurable: (b) => durable.push(b),
    });
    expect(r).toEqual({ written: 22, bytesWritten: 22 * 30_000, storedBytes: 22 * 30_000 });
    expect(written).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(durable.length).toBeGreaterThanOrEqual(3); // 720 KB in checkpoints of ~200 KB
    expect(durable.at(-1)).toBe(22 * 30_000);
    for (const c of groups.flat())
      expect((await store.get(c.id, { verify: true })).equals(c.data)).toBe(true);
    expect(store.stats()).toMatchObject({ chunks: 24, bytes: 24 * 30_000 });
    await store.close();
  });

  it('a producer that fails: earlier checkpoints stay, the open one is rolled back, the store reopens consistent', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const groups = groupsOf(6, 2, 50_000);
    await expect(store.putStream(feed(groups, 5), { checkpointBytes: 150_000 })).rejects.toThrow(
      /producer failed/,
    );
    const kept = store.stats();
    expect(kept.chunks).toBe(8); // two checkpoints of 2 groups each committed; the third (group 4) was open
    await store.close();
    const again = ChunkStore.open(dir);
    expect(statSync(join(dir, 'chunks-v1', 'packs', 'pack-00000001.dat')).size).toBe(again.stats().packBytes);
    for (const c of groups.slice(0, 4).flat())
      expect((await again.get(c.id, { verify: true })).equals(c.data)).toBe(true);
    expect(again.has(groups[4]![0]!.id)).toBe(false); // written to the pack, never indexed: dropped
    await again.close();
  });

  it('a stream that ends right at a checkpoint opens no further, empty one', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const groups = groupsOf(4, 1, 50_000); // each group alone reaches the checkpoint
    const durable: number[] = [];
    const r = await store.putStream(feed(groups), {
      checkpointBytes: 50_000,
      onDurable: (b) => durable.push(b),
    });
    expect(r.written).toBe(4);
    expect(durable).toEqual([50_000, 100_000, 150_000, 200_000]); // one commit per group, none after the last
    expect(store.stats()).toMatchObject({ chunks: 4, packs: 1 });
    await store.close();
  });

  it('after a failed stream, the next one in the same process overwrites its unindexed tail and leaves none', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const big = groupsOf(4, 1, 80_000);
    await expect(store.putStream(feed(big, 3), { checkpointBytes: 150_000 })).rejects.toThrow(
      /producer failed/,
    );
    expect(store.stats().chunks).toBe(2); // the second checkpoint (group 2) rolled back; its 80 KB stay in the pack file
    const pack = join(dir, 'chunks-v1', 'packs', 'pack-00000001.dat');
    expect(statSync(pack).size).toBeGreaterThan(store.stats().packBytes + 80_000);
    const small = groupsOf(1, 1, 10_000);
    await store.putStream(feed(small)); // appends to the same pack, at its committed end
    expect(statSync(pack).size).toBe(store.stats().packBytes); // no stale bytes after the new end
    expect((await store.get(small[0]![0]!.id, { verify: true })).equals(small[0]![0]!.data)).toBe(true);
    await store.close();
  });

  it('refuses a chunk this process did not hash (no unverified bytes through the fast path)', async () => {
    const store = ChunkStore.open(tempDir());
    const data = randomBytes(1000);
    const forged = { id: hashedChunk(data).id, data: Buffer.from(data) };
    await expect(store.putStream(feed([[forged]]))).rejects.toThrow(/was not hashed by this process/);
    expect(store.stats().chunks).toBe(0);
    await store.close();
  });
});

describe('ChunkStore.putMany group commit', () => {
  it('stores calls made while another is being committed together, each counting its own new chunks', async () => {
    const { logger, lines } = capturingLogger('debug');
    const store = ChunkStore.open(tempDir(), { logger });
    const groups = groupsOf(5, 3, 20_000);
    const shared = groups[0]![0]!; // in two calls: written once, counted by the first
    const results = await Promise.all([...groups.map((g) => store.putMany(g)), store.putMany([shared])]);
    expect(results.slice(0, 5)).toEqual(
      groups.map(() => ({ written: 3, bytesWritten: 60_000, storedBytes: 60_000 })),
    );
    expect(results[5]).toEqual({ written: 0, bytesWritten: 0, storedBytes: 0 });
    const commits = lines.filter((l) => l.msg === 'stored batch').length;
    expect(commits).toBeGreaterThan(0);
    expect(commits).toBeLessThan(6); // the calls queued behind the first were committed together
    for (const c of groups.flat())
      expect((await store.get(c.id, { verify: true })).equals(c.data)).toBe(true);
    await store.close();
  });

  it('a failed group commit fails every call in it, and stores nothing of them', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const groups = groupsOf(3, 2, 10_000);
    const heal = failIndexCommit(dir, 'simulated crash before the index commit');
    const results = await Promise.allSettled(groups.map((g) => store.putMany(g)));
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    heal();
    expect(store.stats().chunks).toBe(0);
    await store.close();
  });
});
