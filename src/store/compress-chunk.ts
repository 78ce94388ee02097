import { compress, MIN_FAST_LEVEL } from '../compress/zstd.js';

/*
 * Compressing chunks needs the native zstd addon (master and depot); decoding them does not (the agent
 * decodes with whichever decoder src/compress/zstd-decoder.ts loaded), hence a module apart from
 * encoding.ts.
 */

/** Compression is kept only when it saves at least this fraction of the chunk and this many bytes. */
const MIN_SAVED_FRACTION = 0.03;
const MIN_SAVED_BYTES = 64;

/**
 * Chunks longer than this are first tried on their first PROBE_BYTES at the fastest level: when that
 * saves nothing worth keeping the chunk is taken as incompressible (already compressed media, archives,
 * encrypted data) and stays plain without compressing all of it.
 */
const PROBE_BYTES = 4096;
const PROBE_LEVEL = MIN_FAST_LEVEL;

/**
 * The zstd frame of a chunk when it pays (saves ≥ 3% and ≥ 64 bytes), else null (kept plain).
 * `level` 0 keeps everything plain.
 */
export function compressChunk(plain: Uint8Array, level: number): Buffer | null {
  if (level === 0 || plain.length < 2 * MIN_SAVED_BYTES) return null;
  if (plain.length > 4 * PROBE_BYTES) {
    const probe = compress(plain.subarray(0, PROBE_BYTES), PROBE_LEVEL);
    if (PROBE_BYTES - probe.length < PROBE_BYTES * MIN_SAVED_FRACTION) return null;
  }
  const frame = compress(plain, level);
  const saved = plain.length - frame.length;
  return saved >= MIN_SAVED_BYTES && saved >= plain.length * MIN_SAVED_FRACTION ? frame : null;
}
