/**
 * The gear table and the rolling-hash scan of FastCDC (Xia et al., USENIX ATC 2016; IEEE TPDS 2020).
 *
 * The table is part of the on-disk content model: chunk boundaries, and so every chunk id, depend on
 * it. It is generated deterministically at module load: entry k is the k-th output of mulberry32
 * (Tommy Ettinger's 32-bit PRNG) seeded with GEAR_SEED. Never change the seed or the generator; a test
 * pins the first entries and known chunk boundaries.
 */
import { createWasmGearScanner } from './gear-wasm.js';

export const GEAR_SEED = 0x67656172; // ASCII "gear"

function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function makeGear(): Int32Array {
  const next = mulberry32(GEAR_SEED);
  // Int32Array (same bits as a Uint32Array) keeps every value a small int for V8: no heap numbers in
  // the hot loop, measurably faster than Uint32Array here.
  const table = new Int32Array(256);
  for (let k = 0; k < 256; k++) table[k] = next() | 0;
  return table;
}

/** The 256 gear values, as signed 32-bit integers. */
export const GEAR: Int32Array = makeGear();

/**
 * A mask of the `bits` highest bits of the 32-bit fingerprint, as a signed int. In the gear hash
 * `fp = (fp << 1) + GEAR[byte]`, bit j depends on the last j+1 bytes, so the high bits give the widest
 * window (at least 32 - bits + 1 bytes).
 */
export function highBitsMask(bits: number): number {
  return bits <= 0 ? 0 : (-1 << (32 - bits)) | 0;
}

const scanner = createWasmGearScanner(GEAR);

/** The fingerprint after the last `gearScan` call (a module variable: returning a pair would allocate). */
export let scanFingerprint = 0;

/**
 * Rolls the gear hash over data[from, end) starting from fingerprint `fp`. Returns the index just past
 * the first byte whose fingerprint has all `mask` bits zero (that byte ends the chunk), or -1 when no
 * byte in the range qualifies; either way the fingerprint reached is left in `scanFingerprint`.
 *
 * Runs in WebAssembly (gear-wasm.ts), about twice as fast as the same loop in TypeScript
 * (test/src/chunk/gear.test.ts keeps the plain loop as the reference the scanner must match).
 */
export function gearScan(data: Uint8Array, from: number, end: number, fp: number, mask: number): number {
  const cut = scanner.scan(data, from, end, fp, mask);
  scanFingerprint = scanner.fingerprint();
  return cut;
}
