import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { FILE_CACHE_DIR, FileChunkCache, type CachedRecord } from '../../agent/fetch/file-cache.js';
import { isDepotsyncError } from '../../src/errors.js';
import { blake3Hex } from '../../src/hash/blake3.js';
import { silentLogger } from '../../src/log.js';
import { hashedChunk } from '../../src/store/chunk-id.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';

const cleanups: Array<() => void> = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function dir(): string {
  const t = tempDir('agent-cache-');
  cleanups.push(t.cleanup);
  return t.dir;
}

const open = (d: string, extra: Partial<Parameters<typeof FileChunkCache.open>[1]> = {}) =>
  FileChunkCache.open(d, { logger: silentLogger(), ...extra });

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

/** Every file under the cache folder (fan-out folders flattened). */
function files(d: string): string[] {
  const root = join(d, FILE_CACHE_DIR);
  return readdirSync(root).flatMap((fan) => readdirSync(join(root, fan)).map((n) => join(root, fan, n)));
}

describe('FileChunkCache', () => {
  it('keeps chunks one file each, finds them again at the next open, and counts their bytes', async () => {
    const d = dir();
    const chunks = [1, 2, 3].map((s) => hashedChunk(pseudoRandomBytes(10_000 + s, s)));
    const c = await open(d);
    await c.putMany(chunks);
    await c.putMany(chunks); // already there: nothing written twice
    expect(c.stats()).toEqual({ chunks: 3, bytes: 3 * 16 + 30_006 });
    await c.close();
    const again = await open(d);
    expect(again.stats()).toEqual({ chunks: 3, bytes: 3 * 16 + 30_006 });
    expect(again.missing([chunks[0]!.id, 'f'.repeat(64)])).toEqual(['f'.repeat(64)]);
    expect((await again.get(chunks[1]!.id, { verify: true })).equals(chunks[1]!.data)).toBe(true);
    expect(
      files(d)
        .map((p) => p.split('/').pop())
        .sort(),
    ).toEqual(chunks.map((x) => x.id).sort());
  });

  it('refuses a chunk whose bytes do not hash to its id, and a malformed record', async () => {
    const c = await open(dir());
    const data = pseudoRandomBytes(1000, 9);
    const e = await rejection(c.putMany([{ id: 'a'.repeat(64), data }]));
    expect(isDepotsyncError(e, 'hash-mismatch')).toBe(true);
    const bad = await rejection(c.putMany([{ id: '../../etc/passwd', data }]));
    expect(isDepotsyncError(bad, 'bad-input')).toBe(true);
    const id = blake3Hex(data);
    for (const r of [
      { id, encoding: 'plain', plainLength: 999, stored: data },
      { id, encoding: 'lz4', plainLength: 1000, stored: data },
      { id, encoding: 'zstd', plainLength: -1, stored: data },
    ]) {
      const err = await rejection(c.putRecords([r as CachedRecord]));
      expect(isDepotsyncError(err, 'bad-input')).toBe(true);
    }
    expect(c.stats().chunks).toBe(0);
  });

  it('carries a record’s encoding and plain length; a compressed one needs a decoder to be read plain', async () => {
    const d = dir();
    const plain = Buffer.from('depotsync '.repeat(200));
    const id = blake3Hex(plain);
    const stored = Buffer.from('pretend-compressed');
    const c = await open(d);
    await c.putRecords([{ id, encoding: 'zstd', plainLength: plain.length, stored }]);
    const r = await c.getRecord(id);
    expect(r).toMatchObject({ id, encoding: 'zstd', plainLength: plain.length });
    expect(Buffer.from(r.stored).equals(stored)).toBe(true);
    const e = await rejection(c.get(id));
    expect(isDepotsyncError(e, 'corrupt')).toBe(true);
    expect(e.message).toMatch(/no decoder/);
    const withDecoder = await open(d, { decode: () => plain });
    expect((await withDecoder.get(id, { verify: true })).equals(plain)).toBe(true);
    const lying = await open(d, { decode: () => plain.subarray(1) });
    expect(isDepotsyncError(await rejection(lying.get(id)), 'corrupt')).toBe(true);
  });

  it('a chunk changed on disk: refused on a verified read and removed; a damaged header is refused', async () => {
    const d = dir();
    const chunk = hashedChunk(pseudoRandomBytes(5000, 4));
    const other = hashedChunk(pseudoRandomBytes(5000, 5));
    const c = await open(d);
    await c.putMany([chunk, other]);
    const [path, otherPath] = [chunk, other].map((x) => files(d).find((p) => p.endsWith(x.id))!);
    const bytes = readFileSync(path!);
    bytes[100] ^= 1;
    writeFileSync(path!, bytes);
    const e = await rejection(c.get(chunk.id, { verify: true }));
    expect(isDepotsyncError(e, 'hash-mismatch')).toBe(true);
    expect(c.missing([chunk.id])).toEqual([chunk.id]);
    expect(files(d)).toEqual([otherPath]);
    writeFileSync(otherPath!, 'XXXX');
    expect(isDepotsyncError(await rejection(c.get(other.id)), 'corrupt')).toBe(true);
    const nope = await rejection(c.get('0'.repeat(64)));
    expect(isDepotsyncError(nope, 'not-found')).toBe(true);
  });

  it('evicts: gc keeps only what it is told to, and the byte count follows', async () => {
    const c = await open(dir());
    const chunks = [1, 2, 3, 4].map((s) => hashedChunk(pseudoRandomBytes(4000, s)));
    await c.putMany(chunks);
    const keep = new Set([chunks[0]!.id, chunks[2]!.id]);
    expect(await c.gc((id) => keep.has(id))).toEqual({ removed: 2, bytesFreed: 2 * 4016 });
    expect(c.stats()).toEqual({ chunks: 2, bytes: 2 * 4016 });
    expect(c.missing(chunks.map((x) => x.id))).toEqual([chunks[1]!.id, chunks[3]!.id]);
  });

  it('removes the SQLite chunk store of an earlier agent (the cache starts afresh)', async () => {
    const d = dir();
    mkdirSync(join(d, 'chunks-v1', 'packs'), { recursive: true });
    writeFileSync(join(d, 'chunks-v1', 'index.sqlite'), 'x');
    await open(d);
    expect(readdirSync(d)).toEqual([FILE_CACHE_DIR]);
  });

  it('a writer killed at any moment leaves no chunk that is believed and not whole; its temporary files go', async () => {
    const d = dir();
    const cacheModule = fileURLToPath(new URL('../../dist/agent/fetch/file-cache.js', import.meta.url));
    const idModule = fileURLToPath(new URL('../../dist/src/store/chunk-id.js', import.meta.url));
    const logModule = fileURLToPath(new URL('../../dist/src/log.js', import.meta.url));
    // Large chunks (8 MiB): a kill lands inside a write most of the time.
    const script = `
      const { FileChunkCache } = await import(${JSON.stringify(cacheModule)});
      const { hashedChunk } = await import(${JSON.stringify(idModule)});
      const { silentLogger } = await import(${JSON.stringify(logModule)});
      const { randomBytes } = await import('node:crypto');
      const c = await FileChunkCache.open(${JSON.stringify(d)}, { logger: silentLogger() });
      for (let i = 0; ; i++) {
        await c.putMany([hashedChunk(randomBytes(8 * 1024 * 1024))]);
        process.stdout.write(i + '\\n');
      }`;
    let sawTemp = false;
    for (let round = 0; round < 5 || (!sawTemp && round < 20); round++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve) => {
        let n = 0;
        child.stdout.on('data', (b: Buffer) => {
          n += b.toString().split('\n').length - 1;
          if (n >= 1 + (round % 5)) setTimeout(() => child.kill('SIGKILL'), 5 + (round % 7) * 4);
        });
        child.on('exit', () => resolve());
      });
      sawTemp ||= files(d).some((p) => p.endsWith('.tmp'));
      const c = await open(d);
      expect(files(d).filter((p) => p.endsWith('.tmp'))).toEqual([]);
      for (const p of files(d)) {
        const id = p.split('/').pop()!;
        expect((await c.get(id, { verify: true })).length).toBe(8 * 1024 * 1024);
      }
    }
    // At least one kill landed mid-write (otherwise the test proved nothing about it).
    expect(sawTemp).toBe(true);
  }, 60_000);
});
