import { applyDelta } from '../compress/zstd.js';
import type { DeltaRecord } from '../wire/chunk-delta.js';
import { rebuildWith } from './apply.js';

/**
 * `rebuildWith` the native zstd addon: for depots and the master. Apart from the wire module so that
 * only receivers of deltas load the addon; the agent calls `rebuildWith` with its own decoder.
 */
export function rebuildFromRecord(
  base: Uint8Array,
  rec: Extract<DeltaRecord, { kind: 'delta' | 'zstd' | 'chosen' }>,
  expectedLength: number,
): Buffer | string {
  return rebuildWith(applyDelta, base, rec, expectedLength);
}
