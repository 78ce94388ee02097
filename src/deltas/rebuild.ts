import { applyDelta } from '../compress/zstd.js';
import { rebuildChunk, type DeltaRecord } from '../wire/chunk-delta.js';

/**
 * Rebuild a target chunk from a delta record of either kind (src/wire/chunk-delta.ts) and the
 * receiver's base, or say why not (the caller then fetches the chunk whole). Apart from the wire
 * module so that only receivers of deltas load the zstd addon. The result still has to be hashed
 * against the target id before it is stored.
 */
export function rebuildFromRecord(
  base: Uint8Array,
  rec: Extract<DeltaRecord, { kind: 'delta' | 'zstd' }>,
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
