import { timingSafeEqual } from 'node:crypto';
import { DepotsyncError } from '../errors.js';
import { blake3 } from '../hash/blake3.js';

/** A chunk id: the lowercase hex BLAKE3-256 of the chunk bytes. */
export const CHUNK_ID_RE = /^[0-9a-f]{64}$/;

export function isChunkId(id: unknown): id is string {
  return typeof id === 'string' && CHUNK_ID_RE.test(id);
}

/**
 * Decode at the border: a bad id (wrong length, upper case, path characters)
 * never reaches SQL or a file name.
 */
export function assertChunkId(id: unknown, what = 'chunk id'): asserts id is string {
  if (!isChunkId(id)) {
    const shown = typeof id === 'string' ? JSON.stringify(id.slice(0, 80)) : typeof id;
    throw new DepotsyncError(
      'bad-input',
      `${what} ${shown} is not 64 lowercase hex characters (a BLAKE3 hash)`,
    );
  }
}

export function idToKey(id: string): Buffer {
  return Buffer.from(id, 'hex');
}

export function keyToId(key: Buffer): string {
  return key.toString('hex');
}

/** Does `data` hash to `key`? Constant-time comparison of the digests. */
export function matchesKey(key: Buffer, data: Uint8Array): boolean {
  const digest = blake3(data);
  return digest.length === key.length && timingSafeEqual(digest, key);
}

export interface ChunkInput {
  readonly id: string;
  /** The plain bytes (the id is their BLAKE3). */
  readonly data: Uint8Array;
  /**
   * The zstd frame of `data` to store and serve instead of it (store/encoding.ts); null: compression
   * was tried and does not pay, keep it plain; absent: the store compresses it when it puts it.
   */
  readonly zstd?: Uint8Array | null;
}

/**
 * Chunks whose id this module computed itself from their bytes (and whose `zstd` frame, when given,
 * this process made from them or decoded into them). `putMany` skips re-hashing these
 * (ingest hashes every chunk once, as it is cut); every other chunk is hashed and checked against
 * its claimed id. Objects are frozen and registered here, so a caller cannot relabel one.
 */
const selfHashed = new WeakSet<object>();

export function hashedChunk(data: Uint8Array, zstd?: Uint8Array | null): ChunkInput {
  const id = blake3(data).toString('hex');
  const chunk = Object.freeze(zstd === undefined ? { id, data } : { id, data, zstd });
  selfHashed.add(chunk);
  return chunk;
}

export function isSelfHashed(chunk: ChunkInput): boolean {
  return selfHashed.has(chunk);
}

/**
 * A chunk whose id this process computed from its bytes on another thread (the ingest hash worker,
 * chunk-worker.ts, running the same BLAKE3). Registered like `hashedChunk`; only the ingest
 * pipeline calls it, with the digest the worker returned for exactly these bytes.
 * @internal
 */
export function workerHashedChunk(id: string, data: Uint8Array, zstd?: Uint8Array | null): ChunkInput {
  const chunk = Object.freeze(zstd === undefined ? { id, data } : { id, data, zstd });
  selfHashed.add(chunk);
  return chunk;
}
