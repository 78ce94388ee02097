import { DepotsyncError } from '../errors.js';
import type { ChunkEncoding } from './encoding.js';

/**
 * Pack file format (`chunks-v1/packs/pack-NNNNNNNN.dat`).
 *
 *   file header  8 bytes   "DSPACK01"
 *   record*      4 bytes   "DSC1" (the chunk's plain bytes) or "DSZ1" (one zstd frame of them)
 *                4 bytes   big-endian length L of the stored bytes
 *               32 bytes   chunk id (binary BLAKE3 of the plain bytes)
 *                L bytes   the chunk as stored
 *
 * A "DSZ1" frame carries its plain length in its own header (zstd's content size), and the index row
 * repeats it; stores written before compression hold only "DSC1" records, which stay valid.
 *
 * Records are self-describing so that a pack can be checked (or the index rebuilt) without the index,
 * and a read can confirm it landed on the record the index promised (a stale or wrong index row is
 * caught as 'corrupt' instead of serving the wrong bytes). Only the prefix up to the size committed in
 * the index is valid; anything after it is the tail of a batch that crashed before its commit.
 */
export const PACK_MAGIC = Buffer.from('DSPACK01', 'latin1');
export const PACK_HEADER_BYTES = PACK_MAGIC.length;
export const RECORD_MAGIC = Buffer.from('DSC1', 'latin1');
export const RECORD_MAGIC_ZSTD = Buffer.from('DSZ1', 'latin1');
export const RECORD_HEADER_BYTES = 40;
/** Larger than any chunk the chunker makes (256 KiB max) with ample room; caps what one read allocates. */
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

export function packFileName(packId: number): string {
  return `pack-${String(packId).padStart(8, '0')}.dat`;
}

const PACK_NAME_RE = /^pack-(\d{8,})\.dat$/;

export function packIdFromName(name: string): number | undefined {
  const m = PACK_NAME_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}

function magicOf(encoding: ChunkEncoding): Buffer {
  return encoding === 'zstd' ? RECORD_MAGIC_ZSTD : RECORD_MAGIC;
}

/** The encoding a record's magic names, or undefined when the 4 bytes are no record magic. */
export function recordEncoding(magic: Buffer): ChunkEncoding | undefined {
  if (magic.equals(RECORD_MAGIC)) return 'plain';
  if (magic.equals(RECORD_MAGIC_ZSTD)) return 'zstd';
  return undefined;
}

export function encodeRecordHeader(key: Buffer, length: number, encoding: ChunkEncoding = 'plain'): Buffer {
  const h = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
  magicOf(encoding).copy(h, 0);
  h.writeUInt32BE(length, 4);
  key.copy(h, 8);
  return h;
}

/** Check that a record header (first 40 bytes read at an index row's offset) is the chunk the row names. */
export function checkRecordHeader(
  header: Buffer,
  key: Buffer,
  length: number,
  where: string,
  encoding: ChunkEncoding = 'plain',
): void {
  const id = key.toString('hex');
  if (header.length < RECORD_HEADER_BYTES) throw truncated(id, where, 0, length);
  const ok =
    header.subarray(0, 4).equals(magicOf(encoding)) &&
    header.readUInt32BE(4) === length &&
    header.subarray(8, RECORD_HEADER_BYTES).equals(key);
  if (!ok) {
    throw new DepotsyncError(
      'corrupt',
      `chunk ${id}: the record header in ${where} does not match the index`,
      {
        hint: 'the pack file was damaged or the index is stale; quarantine the chunk (or run a scrub) and sync it again',
      },
    );
  }
}

/**
 * Check that `record` (header + data as read from the pack) is the chunk the index points at, and
 * return the stored bytes. Fewer bytes than promised means the pack was truncated underneath us.
 */
export function decodeRecord(
  record: Buffer,
  key: Buffer,
  length: number,
  where: string,
  encoding: ChunkEncoding = 'plain',
): Buffer {
  checkRecordHeader(record, key, length, where, encoding);
  if (record.length < RECORD_HEADER_BYTES + length)
    throw truncated(key.toString('hex'), where, record.length - RECORD_HEADER_BYTES, length);
  return record.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + length);
}

export function truncated(id: string, where: string, got: number, length: number): DepotsyncError {
  return new DepotsyncError('truncated', `chunk ${id}: ${where} ends after ${got} of its ${length} bytes`, {
    hint: 'the pack file was truncated on disk; quarantine the chunk (or run a scrub) and sync it again',
  });
}
