import type { DecodeOptions } from '../compress/zstd.js';
import { rebuildChunk, type DeltaRecord } from '../wire/chunk-delta.js';

/** How a zstd delta frame is applied: src/compress/zstd.ts `applyDelta`, or a `ZstdDecoder`'s. */
export type ApplyZstdDelta = (base: Uint8Array, frame: Uint8Array, opts: DecodeOptions) => Buffer;

/**
 * Rebuild a target chunk from a delta record of either kind (src/wire/chunk-delta.ts) and the
 * receiver's base (for kind `chosen`, the chunks the record names, concatenated), or say why not (the caller then fetches the chunk whole). The zstd decoder is a
 * parameter so that the agent, which has no native addon, decodes through WebAssembly
 * (src/compress/zstd-decoder.ts). The result still has to be hashed against the target id.
 */
export function rebuildWith(
  applyDelta: ApplyZstdDelta,
  base: Uint8Array,
  rec: Extract<DeltaRecord, { kind: 'delta' | 'zstd' | 'chosen' }>,
  expectedLength: number,
): Buffer | string {
  if (rec.kind === 'delta') return rebuildChunk(base, rec, expectedLength);
  try {
    // The signed length caps the output (a bomb stops there); a wrong base fails zstd's checksum.
    return applyDelta(base, rec.frame, { maxBytes: expectedLength, exact: true });
  } catch (e) {
    return `its zstd delta does not decode against this base (${(e as Error).message})`;
  }
}
