import { describe, expect, it } from 'vitest';
import { frameContentSize, loadZstdWasm } from '../../../src/compress/zstd-wasm.js';
import { loadZstdDecoder } from '../../../src/compress/zstd-decoder.js';
import { applyDelta, compress, delta } from '../../../src/compress/zstd.js';
import { isDepotsyncError } from '../../../src/errors.js';
import { pseudoRandomBytes } from '../../helpers/tmp.js';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return isDepotsyncError(e) ? `${e.code}: ${e.message}` : `untyped: ${(e as Error).message}`;
  }
  return 'no error';
}

/** Compressible but not trivial: text-like lines with varying numbers. */
function sample(bytes: number, seed: number): Buffer {
  const noise = pseudoRandomBytes(bytes, seed);
  let s = '';
  for (let i = 0; s.length < bytes; i++) s += `line ${i} value ${noise[i % noise.length]} depotsync\n`;
  return Buffer.from(s.slice(0, bytes));
}

describe('zstd WebAssembly decoder', async () => {
  const w = await loadZstdWasm();

  it('decodes what the native encoder writes, plain and as a delta against a base', () => {
    const plain = sample(3_000_000, 1);
    expect(w.decompress(compress(plain), { maxBytes: plain.length, exact: true }).equals(plain)).toBe(true);
    const base = pseudoRandomBytes(2_000_000, 2);
    const target = Buffer.concat([base.subarray(0, 700_000), sample(5000, 3), base.subarray(700_000)]);
    const d = delta(base, target);
    expect(d.length).toBeLessThan(20_000);
    expect(w.applyDelta(base, d, { maxBytes: target.length }).equals(target)).toBe(true);
    // The native decoder agrees.
    expect(applyDelta(base, d, { maxBytes: target.length }).equals(target)).toBe(true);
    expect(w.decompress(compress(Buffer.alloc(0)), { maxBytes: 0 }).length).toBe(0);
  });

  it('refuses a frame that declares more than the cap before decoding', () => {
    const plain = sample(100_000, 4);
    expect(code(() => w.decompress(compress(plain), { maxBytes: 99_999 }))).toMatch(
      /^too-large: .*declares 100000/,
    );
  });

  it('stops a frame without a declared size at the cap (dstSize_tooSmall)', () => {
    // `printf 'hello hello hello hello hello hello' | zstd -c --no-content-size`
    const frame = Buffer.from('28b52ffd04586500003068656c6c6f200100b94b112be168e7', 'hex');
    expect(frameContentSize(frame)).toBeNull();
    expect(w.decompress(frame, { maxBytes: 100 }).toString()).toBe('hello hello hello hello hello hello');
    expect(code(() => w.decompress(frame, { maxBytes: 10 }))).toMatch(/^too-large: .*more than the 10 bytes/);
  });

  it('typed errors for damaged, cut, foreign and trailing input, and a wrong base', () => {
    const plain = sample(200_000, 5);
    const frame = compress(plain);
    const flipped = Buffer.from(frame);
    flipped[frame.length - 2]! ^= 0xff; // inside the content checksum
    expect(code(() => w.decompress(flipped, { maxBytes: plain.length }))).toMatch(
      /^corrupt: .*checksum_wrong/,
    );
    expect(
      code(() => w.decompress(frame.subarray(0, frame.length - 10), { maxBytes: plain.length })),
    ).toMatch(/^(truncated|corrupt): /);
    expect(code(() => w.decompress(frame.subarray(0, 6), { maxBytes: plain.length }))).toMatch(
      /^(truncated|corrupt): /,
    );
    expect(code(() => w.decompress(Buffer.from('PK\x03\x04 not zstd'), { maxBytes: 100 }))).toMatch(
      /^corrupt: .*wrong magic/,
    );
    expect(code(() => w.decompress(Buffer.concat([frame, frame]), { maxBytes: 2 * plain.length }))).toMatch(
      /^corrupt: .*bytes follow the frame/,
    );
    expect(code(() => w.decompress(frame, { maxBytes: plain.length + 1, exact: true }))).toMatch(
      /^corrupt: .*expected/,
    );
    expect(code(() => w.decompress(frame, { maxBytes: -1 }))).toMatch(/^bad-input: /);
    expect(code(() => w.decompress(frame, { maxBytes: 2 ** 31 }))).toMatch(/^bad-input: .*WebAssembly/);
    const base = pseudoRandomBytes(300_000, 6);
    const target = Buffer.concat([base.subarray(0, 1000), Buffer.from('x'), base.subarray(1000)]);
    const d = delta(base, target);
    expect(code(() => w.applyDelta(pseudoRandomBytes(300_000, 7), d, { maxBytes: target.length }))).toMatch(
      /^corrupt: /,
    );
  });

  it('the chooser falls back to WebAssembly when asked (or when the addon is absent)', async () => {
    const dec = await loadZstdDecoder({ preferWasm: true });
    expect(dec.implementation).toBe('wasm');
    const plain = sample(50_000, 8);
    expect(dec.decompress(compress(plain), { maxBytes: plain.length }).equals(plain)).toBe(true);
    expect((await loadZstdDecoder()).implementation).toBe('native');
  });
});

describe('loading the WebAssembly decoder more than once', () => {
  it('every load in a process gives a working decoder (the package is initialised once)', async () => {
    for (let k = 0; k < 4; k++) {
      const w = await loadZstdWasm();
      const dec = await loadZstdDecoder({ preferWasm: true });
      expect(dec.implementation).toBe('wasm');
      expect(w).toBeDefined();
    }
  });
});
