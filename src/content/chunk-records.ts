import { DepotsyncError } from '../errors.js';

/**
 * The compact form of a file's chunk list inside a manifest: one base64 string (RFC 4648 §4, with
 * padding) of concatenated 36-byte records, each a 32-byte chunk id followed by the chunk length as a
 * 4-byte big-endian integer. At 64 KiB chunks a 1 GiB package has ~16,000 chunks: this is 48 bytes of
 * text per chunk where hex strings in JSON would be about 90, and the manifest travels in every sync.
 */
export const RECORD_BYTES = 36;
const ID_HEX = /^[0-9a-f]{64}$/;

export interface ChunkRef {
  /** BLAKE3 of the chunk, 64 lower-case hex digits. */
  id: string;
  /** Bytes, 1 .. 2^32 − 1. */
  length: number;
}

export function isChunkIdHex(id: unknown): id is string {
  return typeof id === 'string' && ID_HEX.test(id);
}

export function encodeChunkRecords(chunks: readonly ChunkRef[]): string {
  const buf = Buffer.allocUnsafe(chunks.length * RECORD_BYTES);
  chunks.forEach((c, i) => {
    const at = i * RECORD_BYTES;
    if (buf.write(c.id, at, 32, 'hex') !== 32)
      throw new DepotsyncError('internal', `chunk id ${i} is not 64 hex digits`);
    buf.writeUInt32BE(c.length, at + 32);
  });
  return buf.toString('base64');
}

/**
 * Decode one chunk-list string. Returns a reason string instead of throwing, so a caller can collect
 * problems. Node's base64 decoder skips bad characters and accepts missing padding and the URL
 * alphabet; the re-encode comparison below refuses all of those, so one list has exactly one text.
 */
export function decodeChunkRecords(text: unknown): ChunkRef[] | string {
  if (typeof text !== 'string') return 'expected a base64 string';
  const buf = Buffer.from(text, 'base64');
  if (buf.toString('base64') !== text) return 'not canonical base64 (RFC 4648 alphabet with padding)';
  if (buf.length % RECORD_BYTES !== 0)
    return `${buf.length} bytes is not a whole number of ${RECORD_BYTES}-byte chunk records`;
  const out = new Array<ChunkRef>(buf.length / RECORD_BYTES);
  for (let i = 0; i < out.length; i++) {
    const at = i * RECORD_BYTES;
    out[i] = { id: buf.toString('hex', at, at + 32), length: buf.readUInt32BE(at + 32) };
  }
  return out;
}
