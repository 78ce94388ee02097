import { DepotsyncError, isDepotsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import type { SizedBufferPool } from '../store/buffer-pool.js';
import type { ChunkEncoding, StoredChunk } from '../store/chunk-store.js';

/** A chunk id as it appears in a URL or a request: 64 lowercase hex digits. */
export const CHUNK_ID = /^[0-9a-f]{64}$/;

/** One chunk of a `readMany`: no data, and the problem, for one that cannot be served. */
export interface ReadRecord {
  id: string;
  /** Plain bytes, or with `stored` the bytes as stored (see `encoding`). */
  data: Buffer | undefined;
  encoding?: ChunkEncoding;
  plainLength?: number;
  problem?: Error;
  release?: () => void;
}

/** What the read API needs from the chunk store. */
export interface ChunkReader {
  get(id: string, opts?: { verify?: boolean }): Promise<Buffer>;
  /** The chunk as stored (a zstd frame where the store holds one). */
  getStored(id: string, opts?: { verify?: boolean }): Promise<StoredChunk>;
  has(id: string): boolean;
  /** Chunks in the order asked (ChunkStore.readMany). */
  readMany(
    ids: readonly string[],
    opts: {
      verify: boolean | ((id: string) => boolean);
      runBytes?: number;
      aheadRuns?: number;
      pool?: SizedBufferPool;
      stored?: boolean;
    },
  ): AsyncIterable<ReadRecord>;
}

/**
 * A whole chunk for a response. A corrupt one is logged and answered like a missing one ('not-found'):
 * the client fetches it elsewhere, and nothing damaged is served.
 */
export async function readChunk(
  chunks: ChunkReader,
  id: string,
  verify: boolean,
  log: Logger,
  onCorrupt?: (id: string) => void,
): Promise<Buffer> {
  return notFoundIfCorrupt(() => chunks.get(id, { verify }), id, log, onCorrupt);
}

/** `readChunk` as stored (a zstd frame where the store holds one), for serving without recompressing. */
export function readStoredChunk(
  chunks: ChunkReader,
  id: string,
  verify: boolean,
  log: Logger,
  onCorrupt?: (id: string) => void,
): Promise<StoredChunk> {
  return notFoundIfCorrupt(() => chunks.getStored(id, { verify }), id, log, onCorrupt);
}

async function notFoundIfCorrupt<T>(
  read: () => Promise<T>,
  id: string,
  log: Logger,
  onCorrupt?: (id: string) => void,
): Promise<T> {
  try {
    return await read();
  } catch (e) {
    if (isDepotsyncError(e, 'corrupt')) {
      log.error({ chunk: id }, 'stored chunk failed verification; not served');
      onCorrupt?.(id);
    }
    if (isDepotsyncError(e, 'not-found') || isDepotsyncError(e, 'corrupt')) {
      throw new DepotsyncError('not-found', `chunk ${id} not found`);
    }
    throw e;
  }
}
