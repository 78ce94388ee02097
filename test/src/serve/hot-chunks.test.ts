import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import type { ServeEnv } from '../../../src/serve/env.js';
import { HotChunks } from '../../../src/serve/hot-chunks.js';
import { errorHandler } from '../../../src/serve/http-errors.js';
import { readRoutes, type ReadApiSource } from '../../../src/serve/read-api.js';
import { hashedChunk } from '../../../src/store/chunk-id.js';
import { ChunkStore, STORE_FORMAT_DIR } from '../../../src/store/chunk-store.js';
import { BatchDecoder } from '../../../src/wire/chunk-batch.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';

/** A store stand-in: chunk `x` is 1,000 bytes of the char code of x; `bad` comes back with a problem. */
function fakeStore() {
  const asked: string[][] = [];
  const data = (id: string) => Buffer.alloc(1000, id.charCodeAt(0));
  return {
    asked,
    data,
    async *readMany(ids: readonly string[]) {
      asked.push([...ids]);
      for (const id of ids) {
        if (id === 'bad') yield { id, data: undefined, problem: new Error('corrupt') };
        else yield { id, data: data(id) };
      }
    },
  };
}

async function read(hot: HotChunks, store: ReturnType<typeof fakeStore>, ids: string[]) {
  const out: Array<{ id: string; data: Buffer | undefined }> = [];
  for await (const r of hot.readMany(store, ids, { verify: false }))
    out.push({ id: r.id, data: r.data && Buffer.from(r.data) });
  return out;
}

describe('HotChunks', () => {
  it('keeps a chunk once it is asked for a second time, then serves it without reading the store, in order', async () => {
    const hot = new HotChunks(1_000_000);
    const store = fakeStore();
    await read(hot, store, ['a', 'b']);
    expect(hot.size).toBe(0); // asked once: passed through, nothing copied
    await read(hot, store, ['a', 'b']);
    expect(hot.size).toBe(2);
    store.asked.length = 0;
    const got = await read(hot, store, ['c', 'a', 'd', 'e', 'b', 'f']);
    expect(got.map((r) => r.id)).toEqual(['c', 'a', 'd', 'e', 'b', 'f']);
    for (const r of got) expect(r.data!.equals(store.data(r.id))).toBe(true);
    // Only the cold runs went to the store, each as one read.
    expect(store.asked).toEqual([['c'], ['d', 'e'], ['f']]);
  });

  it('keeps its own copy: the store recycling its buffer does not change what is served', async () => {
    const hot = new HotChunks(1_000_000);
    const shared = Buffer.alloc(1000, 7);
    const store = {
      async *readMany(ids: readonly string[]) {
        for (const id of ids) yield { id, data: shared };
      },
    };
    for (let i = 0; i < 2; i++) for await (const _ of hot.readMany(store, ['x'], { verify: false })) void _;
    shared.fill(9); // the pool hands the buffer to another read
    for await (const r of hot.readMany(store, ['x'], { verify: false }))
      expect(r.data!.every((b) => b === 7)).toBe(true);
  });

  it('never keeps a chunk that came back with a problem', async () => {
    const hot = new HotChunks(1_000_000);
    const store = fakeStore();
    for (let i = 0; i < 3; i++) await read(hot, store, ['bad']);
    expect(hot.size).toBe(0);
    expect(store.asked).toHaveLength(3);
  });

  it('stays under its byte limit, dropping the least recently used first', async () => {
    const hot = new HotChunks(8_000); // eight 1,000-byte chunks (one chunk may take at most an eighth)
    const store = fakeStore();
    const eight = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
    for (let i = 0; i < 2; i++) await read(hot, store, eight);
    expect(hot.heldBytes).toBe(8_000);
    await read(hot, store, ['a']); // a is now the most recently used
    for (let i = 0; i < 2; i++) await read(hot, store, ['i']); // i comes in, b (least recent) goes
    expect(hot.heldBytes).toBe(8_000);
    store.asked.length = 0;
    await read(hot, store, [...eight, 'i']);
    expect(store.asked).toEqual([['b']]);
  });

  it('does not keep a chunk larger than an eighth of its memory', async () => {
    const hot = new HotChunks(7_999);
    const store = fakeStore();
    for (let i = 0; i < 3; i++) await read(hot, store, ['a']);
    expect(hot.size).toBe(0);
  });

  it('keeps only bytes that pass the check (verify on serve: the disk returned a damaged chunk)', async () => {
    const checked: string[] = [];
    const hot = new HotChunks(
      1_000_000,
      (id, data) => (checked.push(id), data[0] === id.charCodeAt(0) && id !== 'z'),
    );
    const store = fakeStore();
    for (let i = 0; i < 3; i++) await read(hot, store, ['y', 'z']);
    expect(hot.size).toBe(1); // y kept, z refused (and asked for again each time)
    expect(checked).toEqual(['y', 'z']); // checked once each, when asked for the second time
    store.asked.length = 0;
    await read(hot, store, ['y', 'z']);
    expect(store.asked).toEqual([['z']]);
  });

  it('with no memory given, every read goes to the store', async () => {
    const hot = new HotChunks(0);
    const store = fakeStore();
    for (let i = 0; i < 3; i++) await read(hot, store, ['a']);
    expect(store.asked).toHaveLength(3);
    expect(hot.size).toBe(0);
  });
});

describe('hot chunks behind the read API (real store, verify on serve)', () => {
  it('serves kept chunks from memory, still right when the disk copy is damaged afterwards; never keeps a damaged one', async () => {
    const tmp = tempDir('hot-chunks-');
    const store = ChunkStore.open(join(tmp.dir, 'store'));
    try {
      const [a, b, d] = [1, 2, 3].map((seed) => hashedChunk(pseudoRandomBytes(50_000 + seed, seed)));
      await store.putMany([a!, b!, d!]);
      const source: ReadApiSource = {
        metadata: () => undefined,
        target: () => undefined,
        revocations: () => undefined,
        chunks: store,
      };
      const app = new Hono<ServeEnv>();
      app.onError(errorHandler(silentLogger()));
      app.route('/', readRoutes(source, silentLogger(), { verifyOnServe: true, verifiedTtlMs: 0 }));
      const batch = async (ids: string[]) => {
        const r = await app.request('/v1/chunks/batch', {
          method: 'POST',
          body: JSON.stringify({ ids }),
          headers: { 'content-type': 'application/json' },
        });
        expect(r.status).toBe(200);
        return new BatchDecoder(ids, 60_000).push(Buffer.from(await r.arrayBuffer()));
      };
      // Asked for twice: a and b are kept in memory.
      for (let i = 0; i < 2; i++) await batch([a!.id, b!.id]);
      // Now the disk goes bad under b and d (one flipped byte each in the pack file).
      const packDir = join(tmp.dir, 'store', STORE_FORMAT_DIR, 'packs');
      for (const name of readdirSync(packDir)) {
        const path = join(packDir, name);
        const bytes = readFileSync(path);
        for (const c of [b!, d!]) {
          const at = bytes.indexOf(Buffer.from(c.data.subarray(0, 64)));
          if (at >= 0) bytes[at + 100] ^= 0x01;
        }
        writeFileSync(path, bytes);
      }
      for (let i = 0; i < 2; i++) {
        const recs = await batch([a!.id, b!.id, d!.id]);
        expect(recs.map((r) => r.id)).toEqual([a!.id, b!.id, d!.id]);
        expect(Buffer.from(recs[0]!.data!).equals(Buffer.from(a!.data))).toBe(true);
        // b: the verified copy in memory, not the damaged disk.
        expect(Buffer.from(recs[1]!.data!).equals(Buffer.from(b!.data))).toBe(true);
        // d: re-hashed from disk on every request, refused every time (never kept).
        expect(recs[2]!.data).toBeUndefined();
      }
    } finally {
      await store.close();
      tmp.cleanup();
    }
  });
});
