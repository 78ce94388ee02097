import { compress } from '../compress/zstd.js';

/*
 * Compressing chunks needs the native zstd addon (master and depot); decoding them does not (the agent
 * decodes with whichever decoder src/compress/zstd-decoder.ts loaded), hence a module apart from
 * encoding.ts.
 */

/** Compression is kept only when it saves at least this fraction of the chunk and this many bytes. */
const MIN_SAVED_FRACTION = 0.03;
const MIN_SAVED_BYTES = 64;

/**
 * The zstd frame of a chunk when it pays (saves ≥ 3% and ≥ 64 bytes), else null (kept plain).
 * `level` 0 keeps everything plain.
 */
export function compressChunk(plain: Uint8Array, level: number): Buffer | null {
  if (level === 0 || plain.length < 2 * MIN_SAVED_BYTES) return null;
  const frame = compress(plain, level);
  const saved = plain.length - frame.length;
  return saved >= MIN_SAVED_BYTES && saved >= plain.length * MIN_SAVED_FRACTION ? frame : null;
}
