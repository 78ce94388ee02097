import { blake3 } from '../hash/blake3.js';

/**
 * BLAKE3 of a short input (≤ 1024 bytes, one BLAKE3 chunk) in plain JavaScript, for the hash tree.
 *
 * Why: the tree hashes 2n tiny inputs (33-byte leaves, 65-byte nodes). Through the native addon every
 * call creates and wraps a hasher object, which cost more than the hashing; these one or two
 * compressions in JavaScript take well under a microsecond each (bench/README.md, `content`).
 * It is a second implementation, so it proves itself against `../hash/blake3.js` when this module
 * loads (and the tests compare every length 0..1024); large inputs always go to the native hash.
 *
 * Single-chunk BLAKE3 (spec §2.4-2.6): cv = IV; each 64-byte block is compressed with counter 0,
 * block length, flags CHUNK_START on the first block, CHUNK_END | ROOT on the last.
 */
export const SMALL_MAX_BYTES = 1024;

const IV = Uint32Array.of(
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
);
const CHUNK_START = 1;
const CHUNK_END = 2;
const ROOT = 8;
// Message word order for each of the 7 rounds (the permutation applied 0..6 times).
const SCHEDULE: Uint8Array = (() => {
  const perm = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
  const out = new Uint8Array(7 * 16);
  let order = Array.from({ length: 16 }, (_, i) => i);
  for (let r = 0; r < 7; r++) {
    out.set(order, r * 16);
    order = perm.map((p) => order[p] as number);
  }
  return out;
})();

const m = new Uint32Array(16);
const cv = new Uint32Array(8);

/**
 * One compression of the message words in `m` into `cv` (spec §2.2). The 16 state words live in
 * local variables and the quarter-round G is written out eight times per round: V8 keeps them in
 * registers, several times faster than a state array.
 */
function compress(blockLen: number, flags: number): void {
  let v0 = cv[0] as number,
    v1 = cv[1] as number,
    v2 = cv[2] as number,
    v3 = cv[3] as number;
  let v4 = cv[4] as number,
    v5 = cv[5] as number,
    v6 = cv[6] as number,
    v7 = cv[7] as number;
  let v8 = 0x6a09e667 | 0,
    v9 = 0xbb67ae85 | 0,
    v10 = 0x3c6ef372 | 0,
    v11 = 0xa54ff53a | 0;
  let v12 = 0; // counter low: chunk 0
  let v13 = 0; // counter high
  let v14 = blockLen;
  let v15 = flags;
  const s = SCHEDULE;
  for (let r = 0; r < 7 * 16; r += 16) {
    // G(0, 4, 8, 12)
    v0 = (v0 + v4 + (m[s[r] as number] as number)) | 0;
    v12 ^= v0;
    v12 = (v12 >>> 16) | (v12 << 16);
    v8 = (v8 + v12) | 0;
    v4 ^= v8;
    v4 = (v4 >>> 12) | (v4 << 20);
    v0 = (v0 + v4 + (m[s[r + 1] as number] as number)) | 0;
    v12 ^= v0;
    v12 = (v12 >>> 8) | (v12 << 24);
    v8 = (v8 + v12) | 0;
    v4 ^= v8;
    v4 = (v4 >>> 7) | (v4 << 25);
    // G(1, 5, 9, 13)
    v1 = (v1 + v5 + (m[s[r + 2] as number] as number)) | 0;
    v13 ^= v1;
    v13 = (v13 >>> 16) | (v13 << 16);
    v9 = (v9 + v13) | 0;
    v5 ^= v9;
    v5 = (v5 >>> 12) | (v5 << 20);
    v1 = (v1 + v5 + (m[s[r + 3] as number] as number)) | 0;
    v13 ^= v1;
    v13 = (v13 >>> 8) | (v13 << 24);
    v9 = (v9 + v13) | 0;
    v5 ^= v9;
    v5 = (v5 >>> 7) | (v5 << 25);
    // G(2, 6, 10, 14)
    v2 = (v2 + v6 + (m[s[r + 4] as number] as number)) | 0;
    v14 ^= v2;
    v14 = (v14 >>> 16) | (v14 << 16);
    v10 = (v10 + v14) | 0;
    v6 ^= v10;
    v6 = (v6 >>> 12) | (v6 << 20);
    v2 = (v2 + v6 + (m[s[r + 5] as number] as number)) | 0;
    v14 ^= v2;
    v14 = (v14 >>> 8) | (v14 << 24);
    v10 = (v10 + v14) | 0;
    v6 ^= v10;
    v6 = (v6 >>> 7) | (v6 << 25);
    // G(3, 7, 11, 15)
    v3 = (v3 + v7 + (m[s[r + 6] as number] as number)) | 0;
    v15 ^= v3;
    v15 = (v15 >>> 16) | (v15 << 16);
    v11 = (v11 + v15) | 0;
    v7 ^= v11;
    v7 = (v7 >>> 12) | (v7 << 20);
    v3 = (v3 + v7 + (m[s[r + 7] as number] as number)) | 0;
    v15 ^= v3;
    v15 = (v15 >>> 8) | (v15 << 24);
    v11 = (v11 + v15) | 0;
    v7 ^= v11;
    v7 = (v7 >>> 7) | (v7 << 25);
    // G(0, 5, 10, 15)
    v0 = (v0 + v5 + (m[s[r + 8] as number] as number)) | 0;
    v15 ^= v0;
    v15 = (v15 >>> 16) | (v15 << 16);
    v10 = (v10 + v15) | 0;
    v5 ^= v10;
    v5 = (v5 >>> 12) | (v5 << 20);
    v0 = (v0 + v5 + (m[s[r + 9] as number] as number)) | 0;
    v15 ^= v0;
    v15 = (v15 >>> 8) | (v15 << 24);
    v10 = (v10 + v15) | 0;
    v5 ^= v10;
    v5 = (v5 >>> 7) | (v5 << 25);
    // G(1, 6, 11, 12)
    v1 = (v1 + v6 + (m[s[r + 10] as number] as number)) | 0;
    v12 ^= v1;
    v12 = (v12 >>> 16) | (v12 << 16);
    v11 = (v11 + v12) | 0;
    v6 ^= v11;
    v6 = (v6 >>> 12) | (v6 << 20);
    v1 = (v1 + v6 + (m[s[r + 11] as number] as number)) | 0;
    v12 ^= v1;
    v12 = (v12 >>> 8) | (v12 << 24);
    v11 = (v11 + v12) | 0;
    v6 ^= v11;
    v6 = (v6 >>> 7) | (v6 << 25);
    // G(2, 7, 8, 13)
    v2 = (v2 + v7 + (m[s[r + 12] as number] as number)) | 0;
    v13 ^= v2;
    v13 = (v13 >>> 16) | (v13 << 16);
    v8 = (v8 + v13) | 0;
    v7 ^= v8;
    v7 = (v7 >>> 12) | (v7 << 20);
    v2 = (v2 + v7 + (m[s[r + 13] as number] as number)) | 0;
    v13 ^= v2;
    v13 = (v13 >>> 8) | (v13 << 24);
    v8 = (v8 + v13) | 0;
    v7 ^= v8;
    v7 = (v7 >>> 7) | (v7 << 25);
    // G(3, 4, 9, 14)
    v3 = (v3 + v4 + (m[s[r + 14] as number] as number)) | 0;
    v14 ^= v3;
    v14 = (v14 >>> 16) | (v14 << 16);
    v9 = (v9 + v14) | 0;
    v4 ^= v9;
    v4 = (v4 >>> 12) | (v4 << 20);
    v3 = (v3 + v4 + (m[s[r + 15] as number] as number)) | 0;
    v14 ^= v3;
    v14 = (v14 >>> 8) | (v14 << 24);
    v9 = (v9 + v14) | 0;
    v4 ^= v9;
    v4 = (v4 >>> 7) | (v4 << 25);
  }
  cv[0] = v0 ^ v8;
  cv[1] = v1 ^ v9;
  cv[2] = v2 ^ v10;
  cv[3] = v3 ^ v11;
  cv[4] = v4 ^ v12;
  cv[5] = v5 ^ v13;
  cv[6] = v6 ^ v14;
  cv[7] = v7 ^ v15;
}

/** BLAKE3(input[start, start+length)) written as 32 bytes at out[outAt]; length ≤ 1024. */
export function blake3SmallInto(
  input: Uint8Array,
  start: number,
  length: number,
  out: Uint8Array,
  outAt: number,
): void {
  if (length > SMALL_MAX_BYTES) throw new RangeError(`blake3SmallInto: ${length} bytes is over one chunk`);
  cv.set(IV);
  const blocks = Math.max(1, Math.ceil(length / 64));
  const end = start + length;
  for (let b = 0; b < blocks; b++) {
    const from = start + b * 64;
    // Message words, little-endian; bytes past the end of the input are zero (spec: zero padding).
    for (let i = 0, at = from; i < 16; i++, at += 4) {
      if (at + 4 <= end) {
        m[i] =
          ((input[at] as number) |
            ((input[at + 1] as number) << 8) |
            ((input[at + 2] as number) << 16) |
            ((input[at + 3] as number) << 24)) >>>
          0;
      } else {
        let w = 0;
        for (let k = 0; k < 4 && at + k < end; k++) w |= (input[at + k] as number) << (8 * k);
        m[i] = w >>> 0;
      }
    }
    compress(
      Math.min(64, length - b * 64),
      (b === 0 ? CHUNK_START : 0) | (b === blocks - 1 ? CHUNK_END | ROOT : 0),
    );
  }
  for (let i = 0; i < 8; i++) {
    const w = cv[i] as number;
    const at = outAt + i * 4;
    out[at] = w & 0xff;
    out[at + 1] = (w >>> 8) & 0xff;
    out[at + 2] = (w >>> 16) & 0xff;
    out[at + 3] = w >>> 24;
  }
}

export function blake3Small(input: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(32);
  blake3SmallInto(input, 0, input.length, out, 0);
  return out;
}

// Self-test against the project's BLAKE3 at load: a wrong tree hash must never go unnoticed.
for (const n of [0, 1, 33, 63, 64, 65, 129, 1024]) {
  const data = Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff);
  if (!blake3Small(data).equals(blake3(data)))
    throw new Error(`blake3-small self-test failed for ${n} bytes`);
}
