import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ChunkStore, hashedChunk } from '../../../src/store/chunk-store.js';
import { ChunkStream } from '../../../src/store/chunk-stream.js';
import type { ChunkInput } from '../../../src/store/chunk-id.js';
import { failIndexCommit, tempDir } from './helpers.js';

const group = (n: number, bytes: number) => Array.from({ length: n }, () => hashedChunk(randomBytes(bytes)));

describe('ChunkStream (push side of putStream)', () => {
  it('stores groups added from several producers at once, reporting each checkpoint as it becomes durable', async () => {
    const store = ChunkStore.open(tempDir());
    const durable: Array<[number, number]> = [];
    const stream = new ChunkStream(store, {
      checkpointBytes: 100_000,
      onDurable: (c, b) => durable.push([c, b]),
    });
    const groups = Array.from({ length: 8 }, () => group(3, 20_000));
    await Promise.all(groups.map((g) => stream.add(g)));
    const r = await stream.end();
    expect(r).toEqual({ written: 24, bytesWritten: 24 * 20_000, storedBytes: 24 * 20_000 });
    expect(durable.length).toBeGreaterThanOrEqual(3); // 480 KB in checkpoints of ~100 KB
    expect(durable.reduce((s, [c]) => s + c, 0)).toBe(24);
    expect(durable.reduce((s, [, b]) => s + b, 0)).toBe(24 * 20_000);
    for (const c of groups.flat())
      expect((await store.get(c.id, { verify: true })).equals(c.data)).toBe(true);
    await store.close();
  });

  it('holds producers back while more than maxQueuedBytes wait to be written', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const seen: number[] = [];
    const target = {
      putMany: async (chunks: readonly ChunkInput[]) => {
        await gate;
        seen.push(chunks.length);
        const bytes = chunks.reduce((s, c) => s + c.data.length, 0);
        return { written: chunks.length, bytesWritten: bytes, storedBytes: bytes };
      },
    };
    const stream = new ChunkStream(target, { maxQueuedBytes: 50_000 });
    let accepted = 0;
    const adds = Array.from({ length: 5 }, () => stream.add(group(1, 30_000)).then(() => accepted++));
    await new Promise((r) => setTimeout(r, 20));
    expect(accepted).toBe(0); // the first is being written (blocked), the rest wait for room
    release();
    await Promise.all(adds);
    await stream.end();
    expect(seen).toEqual([1, 1, 1, 1, 1]);
  });

  it('a failing disk rejects the waiting producers and end, with the disk error; checkpoints before it stay', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const ok = group(4, 40_000);
    let firstDurable!: () => void;
    const committed = new Promise<void>((r) => (firstDurable = r));
    const stream = new ChunkStream(store, { checkpointBytes: 100_000, onDurable: () => firstDurable() });
    await stream.add(ok.slice(0, 2));
    await stream.add(ok.slice(2));
    await committed;
    // The store fails at the next index commit, like a disk that filled up.
    failIndexCommit(dir, 'write pack: no space left on device (ENOSPC)');
    const late = stream.add(group(4, 40_000));
    await expect(Promise.all([late, stream.end()])).rejects.toThrow(/no space left on device/);
    await expect(stream.add(group(1, 10))).rejects.toThrow(/no space left on device/);
    await store.close();
    const again = ChunkStore.open(dir);
    expect(again.stats().chunks).toBe(4); // the first checkpoint (160 KB) was committed, the failed one not
    for (const c of ok) expect((await again.get(c.id, { verify: true })).equals(c.data)).toBe(true);
    await again.close();
  });
});
