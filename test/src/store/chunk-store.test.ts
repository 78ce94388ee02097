import {
  closeSync,
  openSync,
  readdirSync,
  readSync,
  statSync,
  truncateSync,
  writeSync,
  appendFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { ChunkStore, hashedChunk } from '../../../src/store/chunk-store.js';
import { RECORD_HEADER_BYTES } from '../../../src/store/pack-format.js';
import { chunk, errorOf, failIndexCommit, tempDir } from './helpers.js';

const packsOf = (dir: string): string[] =>
  readdirSync(join(dir, 'chunks-v1', 'packs')).map((n) => join(dir, 'chunks-v1', 'packs', n));

describe('ChunkStore basics', () => {
  it('puts, gets, has, missing, size, stats, and keeps data across reopen', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const a = chunk(5000);
    const b = chunk(0);
    const c = chunk(70_000);
    expect(await store.putMany([a, b])).toEqual({ written: 2, bytesWritten: 5000, storedBytes: 5000 });
    expect(store.has(a.id)).toBe(true);
    expect(store.has(c.id)).toBe(false);
    expect(store.missing([c.id, a.id, c.id, b.id])).toEqual([c.id]);
    expect(store.size(a.id)).toBe(5000);
    expect(store.size(c.id)).toBeUndefined();
    expect((await store.get(a.id)).equals(a.data)).toBe(true);
    expect((await store.get(b.id)).length).toBe(0);
    expect(store.stats()).toMatchObject({ chunks: 2, bytes: 5000, packs: 1, deadBytes: 0 });
    await store.close();

    const again = ChunkStore.open(dir);
    expect((await again.get(a.id, { verify: true })).equals(a.data)).toBe(true);
    await again.put(c.id, c.data);
    expect(again.stats()).toMatchObject({ chunks: 3, bytes: 75_000, packs: 1 });
    await again.close();
  });

  it('treats "already there" as success and stores nothing twice (idempotent re-put)', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const a = chunk(3000);
    expect(await store.put(a.id, a.data)).toEqual({ written: 1, bytesWritten: 3000, storedBytes: 3000 });
    const packBytes = store.stats().packBytes;
    expect(await store.putMany([a, a, { id: a.id, data: Buffer.from(a.data) }])).toEqual({
      written: 0,
      bytesWritten: 0,
      storedBytes: 0,
    });
    expect(store.stats().packBytes).toBe(packBytes);
    expect(statSync(packsOf(dir)[0]!).size).toBe(packBytes);
    await store.close();
  });

  it('rejects a chunk whose bytes do not match its id, and stores nothing of that batch', async () => {
    const store = ChunkStore.open(tempDir());
    const good = chunk(100);
    const bad = { id: chunk(100).id, data: good.data.subarray(0, 99) };
    const err = await errorOf(store.putMany([good, bad]));
    expect(err.code).toBe('hash-mismatch');
    expect(err.message).toContain(bad.id);
    expect(store.has(good.id)).toBe(false);
    expect(store.has(bad.id)).toBe(false);
    expect(store.stats()).toMatchObject({ chunks: 0, packs: 0 });
    await store.close();
  });

  it('refuses ids that are not 64 lowercase hex characters before touching SQL or files', async () => {
    const store = ChunkStore.open(tempDir());
    for (const id of ['../../etc/passwd', 'AB'.repeat(32), 'ab'.repeat(31)]) {
      expect((await errorOf(() => store.has(id))).code).toBe('bad-input');
      expect((await errorOf(store.put(id, Buffer.alloc(1)))).code).toBe('bad-input');
    }
    expect((await errorOf(store.get('00'.repeat(32)))).code).toBe('not-found');
    await store.close();
  });

  it('serves ranges and 1 MiB streams with inclusive ends, like an HTTP Range', async () => {
    const store = ChunkStore.open(tempDir());
    const big = chunk(3 * 1024 * 1024 + 17);
    await store.putMany([big]);
    expect(await store.readRange(big.id, 10, 19)).toEqual(big.data.subarray(10, 20));
    const whole = store.createReadStream(big.id);
    expect(whole.readableHighWaterMark).toBe(1024 * 1024);
    const parts: Buffer[] = [];
    for await (const p of whole) parts.push(p as Buffer);
    expect(Buffer.concat(parts).equals(big.data)).toBe(true); // (toEqual on MiB buffers is slow)
    expect(parts.length).toBe(4);
    const part = store.createReadStream(big.id, { start: 1024 * 1024 - 2, end: 1024 * 1024 + 2 });
    expect(await text(part)).toBe(big.data.subarray(1024 * 1024 - 2, 1024 * 1024 + 3).toString());
    expect((await errorOf(store.readRange(big.id, 5, big.data.length))).code).toBe('bad-input');
    expect((await errorOf(() => store.createReadStream('11'.repeat(32)))).code).toBe('not-found');
    await store.close();
  });

  it('stores each id once when two putMany with overlapping ids run at the same time', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const shared = Array.from({ length: 50 }, () => chunk(2000));
    const onlyA = Array.from({ length: 10 }, () => chunk(2000));
    const onlyB = Array.from({ length: 10 }, () => chunk(2000));
    const [ra, rb] = await Promise.all([
      store.putMany([...shared, ...onlyA]),
      store.putMany([...onlyB, ...shared]),
    ]);
    expect(ra.written + rb.written).toBe(70);
    expect(ra.bytesWritten + rb.bytesWritten).toBe(70 * 2000);
    expect(store.stats()).toMatchObject({ chunks: 70, bytes: 140_000, deadBytes: 0 });
    expect(statSync(packsOf(dir)[0]!).size).toBe(8 + 70 * (RECORD_HEADER_BYTES + 2000));
    for (const c of [...shared, ...onlyA, ...onlyB])
      expect((await store.get(c.id)).equals(c.data)).toBe(true);
    await store.close();
  });

  it('does not re-hash chunks it hashed itself (hashedChunk), and they cannot be relabelled', async () => {
    const store = ChunkStore.open(tempDir());
    const c = hashedChunk(Buffer.from('hello'));
    expect(Object.isFrozen(c)).toBe(true);
    expect(() => {
      (c as { id: string }).id = '00'.repeat(32);
    }).toThrow();
    // A copy with a forged id is an ordinary object: it is hashed and refused.
    expect((await errorOf(store.putMany([{ ...c, id: '00'.repeat(32) }]))).code).toBe('hash-mismatch');
    expect((await store.putMany([c])).written).toBe(1);
    await store.close();
  });

  it('starts a new pack when the current one is full', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir, { maxPackBytes: 64 * 1024 });
    const cs = Array.from({ length: 5 }, () => chunk(30_000));
    for (const c of cs) await store.put(c.id, c.data);
    expect(store.stats().packs).toBe(3);
    for (const c of cs) expect((await store.get(c.id)).equals(c.data)).toBe(true);
    await store.close();
  });

  it('validates its options, naming the option and the value', () => {
    expect(() => ChunkStore.open(tempDir(), { maxPackBytes: 12 })).toThrow(
      /maxPackBytes must be an integer from 65536 .* got 12/,
    );
    expect(() => ChunkStore.open(tempDir(), { compactDeadFraction: 2 })).toThrow(/compactDeadFraction/);
  });
});

describe('ChunkStore damage and crashes', () => {
  it('verify on read catches a flipped byte in the pack, naming the chunk', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const a = chunk(4096);
    const b = chunk(4096);
    await store.putMany([a, b]);
    const pack = packsOf(dir)[0]!;
    // Flip one byte in the middle of a's data (first record after the 8-byte pack header).
    const fd = openSync(pack, 'r+');
    const one = Buffer.alloc(1);
    const at = 8 + RECORD_HEADER_BYTES + 2000;
    readSync(fd, one, 0, 1, at);
    one[0] = one[0]! ^ 0x01;
    writeSync(fd, one, 0, 1, at);
    closeSync(fd);

    const err = await errorOf(store.get(a.id, { verify: true }));
    expect(err.code).toBe('corrupt');
    expect(err.message).toContain(a.id);
    expect((await store.get(a.id, { verify: false })).length).toBe(4096); // unverified read gives the damaged bytes
    expect((await store.get(b.id)).equals(b.data)).toBe(true);

    // A scrub takes it out of service; a good copy can then be stored again.
    expect(await store.quarantine(a.id)).toBe(true);
    expect(store.has(a.id)).toBe(false);
    expect(readdirSync(join(dir, 'chunks-v1', 'quarantine'))[0]).toMatch(
      new RegExp(`^${a.id}\\.\\d+\\.bin$`),
    );
    expect((await store.put(a.id, a.data)).written).toBe(1);
    expect((await store.get(a.id)).equals(a.data)).toBe(true);
    await store.close();
  });

  it('a damaged record header is reported as corrupt even without verification', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const a = chunk(100);
    await store.putMany([a]);
    const fd = openSync(packsOf(dir)[0]!, 'r+');
    writeSync(fd, Buffer.from('XXXX'), 0, 4, 8);
    closeSync(fd);
    const err = await errorOf(store.get(a.id, { verify: false }));
    expect(err.code).toBe('corrupt');
    expect(err.message).toContain(a.id);
    await store.close();
  });

  it('a truncated pack is a truncated error naming the chunk', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const a = chunk(4096);
    const b = chunk(4096);
    await store.putMany([a, b]);
    const pack = packsOf(dir)[0]!;
    truncateSync(pack, statSync(pack).size - 100);
    const err = await errorOf(store.get(b.id));
    expect(err.code).toBe('truncated');
    expect(err.message).toContain(b.id);
    expect((await errorOf(store.readRange(b.id, 4000, 4095))).code).toBe('truncated');
    const streamErr = await errorOf(text(store.createReadStream(b.id)));
    expect(streamErr.code).toBe('truncated');
    expect((await store.get(a.id)).equals(a.data)).toBe(true);
    await store.close();
  });

  it('a batch appended but never committed (crash before the index commit) leaves a consistent store', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const kept = chunk(4096);
    await store.putMany([kept]);
    const committed = store.stats().packBytes;
    const lost = chunk(4096);
    const heal = failIndexCommit(dir, 'simulated crash after the pack fsync, before the index commit');
    await expect(store.putMany([lost])).rejects.toThrow(/simulated crash/);
    heal();
    const pack = packsOf(dir)[0]!;
    expect(statSync(pack).size).toBeGreaterThan(committed); // the bytes reached the pack
    expect(store.has(lost.id)).toBe(false);
    await store.close();
    // Also garbage at the tail, as a torn write would leave.
    appendFileSync(pack, Buffer.alloc(777, 0xee));

    const again = ChunkStore.open(dir);
    expect(statSync(pack).size).toBe(committed); // open() dropped the uncommitted tail
    expect(again.missing([kept.id, lost.id])).toEqual([lost.id]);
    expect((await again.get(kept.id)).equals(kept.data)).toBe(true);
    expect((await errorOf(again.get(lost.id))).code).toBe('not-found');
    // The next batch is appended at the committed size and reads back.
    await again.putMany([lost]);
    expect((await again.get(lost.id)).equals(lost.data)).toBe(true);
    expect(again.stats()).toMatchObject({ chunks: 2, deadBytes: 0 });
    await again.close();
  });

  it('a new pack whose first batch never committed is removed at open', async () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir);
    const c = chunk(100);
    const heal = failIndexCommit(dir, 'crash');
    await expect(store.putMany([c])).rejects.toThrow('crash');
    heal();
    expect(packsOf(dir).length).toBe(1); // file written, row rolled back
    await store.close();
    writeFileSync(
      join(dir, 'chunks-v1', 'packs', 'pack-00000077.dat'),
      'orphan of an interrupted compaction',
    );
    const again = ChunkStore.open(dir);
    expect(packsOf(dir)).toEqual([]);
    expect(again.stats()).toMatchObject({ chunks: 0, packs: 0 });
    await again.putMany([c]);
    expect((await again.get(c.id)).equals(c.data)).toBe(true);
    await again.close();
  });
});
