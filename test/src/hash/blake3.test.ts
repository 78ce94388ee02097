import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import {
  blake3,
  blake3Hex,
  blake3Implementation,
  checkBlake3,
  checkBlake3With,
  createBlake3,
  blake3With,
  createBlake3With,
  digestEquals,
  hashFile,
  loadWasmBackend,
  type Blake3Backend,
} from '../../../src/hash/blake3.js';
import { backend, ONE_SHOT_MAX_BYTES } from '../../../src/hash/backend.js';
import { isDepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';

interface Vector {
  input_len: number;
  hash: string;
}
const vectors = (
  JSON.parse(readFileSync(new URL('./blake3-vectors.json', import.meta.url), 'utf8')) as { cases: Vector[] }
).cases;

/** The official test input: byte i = i mod 251. */
function vectorInput(len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = i % 251;
  return out;
}

/** Feed `data` in a repeating pattern of awkward sizes around the 64-byte block and 1 KiB chunk edges. */
function streamed(update: (d: Uint8Array) => unknown, data: Uint8Array): void {
  const sizes = [1, 7, 63, 64, 65, 1023, 1024, 1025, 0, 4099];
  let k = 0;
  for (let i = 0; i < data.length;) {
    const n = sizes[k++ % sizes.length]!;
    update(data.subarray(i, i + n));
    i += n;
  }
}

const dir = mkdtempSync(join(tmpdir(), 'depotsync-blake3-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('BLAKE3 official vectors', () => {
  it('has the vectors for the lengths we rely on', () => {
    expect(vectors.map((v) => v.input_len)).toEqual(
      expect.arrayContaining([0, 1, 1023, 1024, 1025, 2048, 31744, 102400]),
    );
  });

  for (const v of vectors) {
    it(`len ${v.input_len}: one-shot, streaming and hashFile agree with the vector`, async () => {
      const input = vectorInput(v.input_len);
      expect(blake3Hex(input)).toBe(v.hash);
      expect(blake3(input)).toEqual(Buffer.from(v.hash, 'hex'));

      const h = createBlake3();
      streamed((d) => h.update(d), input);
      expect(h.digestHex()).toBe(v.hash);
      expect(h.digest().toString('hex')).toBe(v.hash);

      const file = join(dir, `vector-${v.input_len}`);
      writeFileSync(file, input);
      expect(await hashFile(file)).toBe(v.hash);
      // Small reads: many iterations of the double-buffered loop, and a short last read.
      expect(await hashFile(file, { readBytes: 4096 })).toBe(v.hash);
    });
  }
});

describe('hashFile', () => {
  it('hashes a multi-megabyte file the same as one-shot', async () => {
    const data = vectorInput(5 * 1024 * 1024 + 17);
    const file = join(dir, 'big');
    writeFileSync(file, data);
    expect(await hashFile(file)).toBe(blake3Hex(data));
    expect(await hashFile(file, { readBytes: 1 << 16 })).toBe(blake3Hex(data));
  });

  it('names the file when it does not exist', async () => {
    const missing = join(dir, 'no-such-file');
    const err = await hashFile(missing).catch((e: unknown) => e);
    expect(isDepotsyncError(err, 'not-found')).toBe(true);
    expect((err as Error).message).toContain(missing);
  });

  it('rejects a bad read size naming the option', async () => {
    await expect(hashFile(join(dir, 'big'), { readBytes: 10 })).rejects.toThrow(/readBytes.*got 10/);
  });
});

describe('implementation', () => {
  it('runs on the native addon here', () => {
    expect(blake3Implementation()).toBe('native');
    expect(checkBlake3(silentLogger())).toBe('native');
  });

  it('warns loudly, with the fix, when only the wasm fallback loaded', async () => {
    const wasm = await loadWasmBackend('blake3.node: cannot open shared object file');
    const lines: string[] = [];
    const log = pino(
      { level: 'debug' },
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      }),
    );
    expect(checkBlake3With(wasm, log)).toBe('wasm');
    const warned = lines
      .map((l) => JSON.parse(l) as { level: number; msg: string; hint: string })
      .find((l) => l.level === 40);
    expect(warned?.msg).toMatch(/slow WebAssembly fallback.*cannot open shared object/);
    expect(warned?.hint).toMatch(/npm rebuild @c4312\/blake3-native/);
  });

  it('the wasm fallback matches the vectors, also for updates over its 1 MiB scratch buffer', async () => {
    const wasm: Blake3Backend = await loadWasmBackend();
    for (const v of vectors) {
      const h = createBlake3With(wasm);
      streamed((d) => h.update(d), vectorInput(v.input_len));
      expect(h.digestHex()).toBe(v.hash);
    }
    const big = vectorInput(3 * 1024 * 1024 + 5);
    expect(createBlake3With(wasm).update(big).digestHex()).toBe(blake3Hex(big));
    for (const v of vectors) expect(wasm.oneShot!(vectorInput(v.input_len)).toString('hex')).toBe(v.hash);
  });

  it('the wasm backend hashes 1 GiB as chunks without exhausting its heap (no garbage collection between)', async () => {
    const wasm = await loadWasmBackend();
    const chunk = vectorInput(64 * 1024);
    const want = blake3Hex(chunk);
    // 16,384 chunks of 64 KiB, in one synchronous loop: finalizers never run, so a hasher not freed at
    // its digest would exhaust the 16 MiB WebAssembly heap (the process aborts).
    for (let i = 0; i < 16_384; i++) {
      if (blake3With(wasm, chunk).toString('hex') !== want) throw new Error(`one-shot ${i} differs`);
      if (createBlake3With(wasm).update(chunk).digestHex() !== want) throw new Error(`streamed ${i} differs`);
    }
    const h = createBlake3With(wasm).update(chunk);
    expect(h.digestHex()).toBe(h.digestHex()); // a second digest of the same hasher still answers
  }, 120_000);
});

describe('one-shot hashing of chunk-sized inputs (@napi-rs/blake-hash)', () => {
  it('loaded here and passed its self-test, so blake3() takes it for inputs up to ONE_SHOT_MAX_BYTES', () => {
    expect(backend.oneShot).toBeTypeOf('function');
    expect(backend.oneShotPath).toMatch(/blake-hash/);
  });

  it('agrees with the main backend on every vector and on sizes around the block, chunk and switch-over edges', () => {
    for (const v of vectors) expect(backend.oneShot!(vectorInput(v.input_len)).toString('hex')).toBe(v.hash);
    const data = vectorInput(ONE_SHOT_MAX_BYTES + 4099);
    for (const n of [
      0,
      1,
      64,
      65,
      1024,
      1025,
      65_536,
      65_537,
      262_143,
      ONE_SHOT_MAX_BYTES - 1,
      ONE_SHOT_MAX_BYTES,
      ONE_SHOT_MAX_BYTES + 1,
    ]) {
      // An offset view too: the library must honour byteOffset, not hash from the buffer's start.
      const piece = data.subarray(3, 3 + n);
      expect(blake3(piece).equals(blake3With(backend, piece))).toBe(true);
    }
  });
});

describe('digestEquals', () => {
  it('compares raw and hex digests', () => {
    const a = blake3(vectorInput(10));
    expect(digestEquals(a, Buffer.from(a))).toBe(true);
    expect(digestEquals(a.toString('hex'), blake3Hex(vectorInput(10)))).toBe(true);
    expect(digestEquals(a, blake3(vectorInput(11)))).toBe(false);
    expect(digestEquals(a, a.subarray(0, 31))).toBe(false);
  });
});

describe('BLAKE3 of bytes in a SharedArrayBuffer', () => {
  it('hashes them like any other bytes (the native addon alone would crash the process on them)', () => {
    const shared = new Uint8Array(new SharedArrayBuffer(10_000));
    for (let i = 0; i < shared.length; i++) shared[i] = i % 251;
    const plain = Uint8Array.from(shared);
    expect(blake3(shared.subarray(7, 9000)).equals(blake3(plain.subarray(7, 9000)))).toBe(true);
  });
});

describe('DEPOTSYNC_BLAKE3=wasm', () => {
  it('makes the process hash on WebAssembly although the addon is built', () => {
    const mod = new URL('../../../dist/src/hash/blake3.js', import.meta.url).href;
    const script = `const b = await import(${JSON.stringify(mod)}); console.log(b.blake3Implementation(), b.blake3Hex(new Uint8Array(0)));`;
    const run = (env: Record<string, string>) =>
      execFileSync(process.execPath, ['--input-type=module', '-e', script], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
      }).trim();
    expect(run({ DEPOTSYNC_BLAKE3: 'wasm' })).toBe(
      'wasm af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262',
    );
    expect(run({ DEPOTSYNC_BLAKE3: '' }).split(' ')[0]).toBe('native');
  });
});
