import type { PackFiles } from './pack-files.js';
import type { ChunkEncoding } from './encoding.js';
import { RECORD_HEADER_BYTES, recordEncoding } from './pack-format.js';

/** Read-ahead of the sequential pack scan. */
const BLOCK_BYTES = 8 * 1024 * 1024;

export interface ScannedRecord {
  key: Buffer;
  offset: number;
  /** The stored bytes (a zstd frame when `encoding` says so). */
  data: Buffer;
  encoding: ChunkEncoding;
}

/**
 * Walk the records of a pack from its file header to `endBytes` (its committed size) with large
 * sequential reads. Stops with `{ bad: offset }` at a record header that is not a record (damage):
 * the caller then keeps the pack instead of guessing where the next record starts.
 */
export async function* scanPack(
  packs: PackFiles,
  packId: number,
  startBytes: number,
  endBytes: number,
): AsyncGenerator<ScannedRecord, { bad?: number }> {
  let block: Buffer = Buffer.alloc(0);
  let blockStart = startBytes;
  // Make [pos, pos + n) available in `block`; a fresh Buffer per read so yielded slices stay valid.
  const need = async (pos: number, n: number): Promise<boolean> => {
    if (pos >= blockStart && pos + n <= blockStart + block.length) return true;
    const want = Math.min(Math.max(n, BLOCK_BYTES), endBytes - pos);
    if (want < n) return false;
    block = await packs.read(packId, pos, want);
    blockStart = pos;
    return block.length >= n;
  };
  let pos = startBytes;
  while (pos < endBytes) {
    if (!(await need(pos, RECORD_HEADER_BYTES))) return { bad: pos };
    const h = block.subarray(pos - blockStart, pos - blockStart + RECORD_HEADER_BYTES);
    const encoding = recordEncoding(h.subarray(0, 4));
    if (!encoding) return { bad: pos };
    const length = h.readUInt32BE(4);
    const key = Buffer.from(h.subarray(8, RECORD_HEADER_BYTES));
    if (pos + RECORD_HEADER_BYTES + length > endBytes) return { bad: pos };
    if (!(await need(pos, RECORD_HEADER_BYTES + length))) return { bad: pos };
    const at = pos - blockStart + RECORD_HEADER_BYTES;
    yield { key, offset: pos, data: block.subarray(at, at + length), encoding };
    pos += RECORD_HEADER_BYTES + length;
  }
  return {};
}
