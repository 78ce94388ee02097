import { describe, expect, it } from 'vitest';
import { GEAR, gearScan, highBitsMask, scanFingerprint } from '../../../src/chunk/gear.js';
import { WASM_GEAR_WINDOW_BYTES } from '../../../src/chunk/gear-wasm.js';

/** The gear scan as the plain loop it replaces: the reference the WebAssembly scanner must match. */
function referenceScan(
  data: Uint8Array,
  from: number,
  end: number,
  fp: number,
  mask: number,
): { cut: number; fp: number } {
  let h = fp | 0;
  for (let i = from; i < end; i++) {
    h = ((h << 1) + GEAR[data[i]!]!) | 0;
    if ((h & mask) === 0) return { cut: i + 1, fp: h };
  }
  return { cut: -1, fp: h };
}

function noise(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

describe('gearScan (WebAssembly) matches the plain loop', () => {
  const data = noise(3 * WASM_GEAR_WINDOW_BYTES + 12_345, 7);

  it('finds the same cuts and fingerprints for every mask width, across window edges', () => {
    for (const bits of [0, 1, 4, 9, 14, 18, 31, 32]) {
      const mask = highBitsMask(bits);
      let pos = 0;
      let fp = 0x1234_5678 | 0;
      let cuts = 0;
      while (pos < data.length) {
        const want = referenceScan(data, pos, data.length, fp, mask);
        const cut = gearScan(data, pos, data.length, fp, mask);
        expect([cut, scanFingerprint], `mask of ${bits} bits from ${pos}`).toEqual([want.cut, want.fp]);
        if (cut < 0) break;
        cuts++;
        pos = cut;
        fp = scanFingerprint;
        if (cuts > 2000) break; // narrow masks cut at nearly every byte: a sample is enough
      }
    }
  });

  it('handles ranges of every small length and odd offsets (the unrolled loop and its tail)', () => {
    const mask = highBitsMask(3);
    for (let from = 0; from < 9; from++) {
      for (let len = 0; len <= 13; len++) {
        const want = referenceScan(data, from, from + len, -7, mask);
        expect(
          [gearScan(data, from, from + len, -7, mask), scanFingerprint],
          `from ${from}, ${len} bytes`,
        ).toEqual([want.cut, want.fp]);
      }
    }
  });

  it('rolls the fingerprint over a range with no cut exactly like the loop (resumable across calls)', () => {
    const never = -1; // all 32 bits must be zero: with this input no byte qualifies
    const want = referenceScan(data, 100, data.length, 99, never);
    expect(want.cut).toBe(-1);
    expect(gearScan(data, 100, data.length, 99, never)).toBe(-1);
    expect(scanFingerprint).toBe(want.fp);
    // Split anywhere: the same end state.
    gearScan(data, 100, WASM_GEAR_WINDOW_BYTES + 3, 99, never);
    gearScan(data, WASM_GEAR_WINDOW_BYTES + 3, data.length, scanFingerprint, never);
    expect(scanFingerprint).toBe(want.fp);
  });

  it('reads a Buffer view with a byte offset like a plain Uint8Array', () => {
    const backing = Buffer.concat([Buffer.alloc(5, 0xaa), Buffer.from(data)]);
    const view = backing.subarray(5);
    const mask = highBitsMask(12);
    const want = referenceScan(data, 10, data.length, 0, mask);
    expect(gearScan(view, 10, view.length, 0, mask)).toBe(want.cut);
    expect(scanFingerprint).toBe(want.fp);
  });
});
