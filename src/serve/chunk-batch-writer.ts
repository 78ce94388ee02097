import type { Context } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { isDepotsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import { SizedBufferPool } from '../store/buffer-pool.js';
import { idToKey, matchesKey } from '../store/chunk-id.js';
import { plainBytes } from '../store/encoding.js';
import {
  BATCH_CONTENT_TYPE,
  BATCH_CONTENT_TYPE_V2,
  encodeRecordHeader,
  encodeRecordHeaderV2,
  type BatchRequest,
} from '../wire/chunk-batch.js';
import type { ReadRecord } from './chunk-reader.js';
import { BatchBudget, RecentlyVerified } from './batch-budget.js';
import type { ChunkReader } from './chunk-reader.js';
import type { ServeEnv } from './env.js';
import { HotChunks } from './hot-chunks.js';
import { untilOrClose } from './outgoing.js';

/** Chunk ids remembered as recently verified (about 9 MB of map entries). */
const VERIFIED_ENTRIES = 100_000;

export interface ChunkBatchOptions {
  /** Re-hash a chunk before serving it (distrust your own disk). */
  verifyOnServe: boolean;
  /** How long a chunk re-hashed before serving counts as verified for the next client. */
  verifiedTtlMs: number;
  /** Memory shared by all batch responses in flight (read-ahead and socket buffers). */
  batchMemoryBytes: number;
  /** Chunks many clients ask for at once, kept in memory (hot-chunks.ts); 0 = none. */
  hotChunkBytes: number;
  /** Bytes of a chunk sent (`bytes`, compressed where it was sent so) and its plain length. */
  onServed?: (kind: 'chunk', bytes: number, plainBytes?: number) => void;
  /** A stored chunk failed its hash and was not served: the owner quarantines and refetches it. */
  onCorrupt?: (id: string) => void;
}

/**
 * Writes the responses of `POST /v1/chunks/batch` (src/wire/chunk-batch.ts), sharing between all of
 * them one memory budget, one pool of run buffers, the recently verified ids and the hot chunks.
 */
export class ChunkBatchWriter {
  private readonly budget: BatchBudget;
  /** Runs are read into recycled buffers, given back once the socket has taken their last record. */
  private readonly pool: SizedBufferPool;
  private readonly verified: RecentlyVerified;
  private readonly hot: HotChunks;

  constructor(
    private readonly chunks: ChunkReader,
    private readonly log: Logger,
    private readonly opts: ChunkBatchOptions,
  ) {
    this.budget = new BatchBudget(opts.batchMemoryBytes);
    this.pool = new SizedBufferPool(64 * 1024, 1024 * 1024, opts.batchMemoryBytes);
    this.verified = new RecentlyVerified(VERIFIED_ENTRIES, opts.verifiedTtlMs);
    // Kept chunks are re-hashed once as they go in (verify on serve), not each time they are served.
    const check = opts.verifyOnServe
      ? (id: string, data: Buffer, encoding: 'plain' | 'zstd', plainLength: number) => {
          try {
            return matchesKey(idToKey(id), plainBytes(encoding, data, plainLength, `chunk ${id}`));
          } catch {
            return false;
          }
        }
      : undefined;
    this.hot = new HotChunks(opts.hotChunkBytes, check);
  }

  /**
   * Answer a batch: straight to the socket when the server gives one, else as one body. Chunks are read
   * as stored; a receiver that takes zstd records (format 2) gets them as they are, an older one (format
   * 1) gets plain bytes decoded here.
   */
  async respond(c: Context<ServeEnv>, req: BatchRequest): Promise<Response> {
    const { opts, verified, pool, log } = this;
    const { ids } = req;
    const v2 = req.zstd;
    const contentType = v2 ? BATCH_CONTENT_TYPE_V2 : BATCH_CONTENT_TYPE;
    // A record's header and the bytes that follow it, in the response's format.
    const framed = (r: ReadRecord): { header: Buffer; data: Buffer | undefined } => {
      if (!r.data) {
        const header = v2
          ? encodeRecordHeaderV2(r.id, undefined, 'plain', 0)
          : encodeRecordHeader(r.id, undefined);
        return { header, data: undefined };
      }
      const encoding = r.encoding ?? 'plain';
      const plainLength = r.plainLength ?? r.data.length;
      if (v2)
        return { header: encodeRecordHeaderV2(r.id, r.data.length, encoding, plainLength), data: r.data };
      let plain: Uint8Array;
      try {
        plain = plainBytes(encoding, r.data, plainLength, `chunk ${r.id}`);
      } catch {
        // A stored frame that does not decode is damage: answered as missing, like a failed hash.
        log.error({ chunk: r.id }, 'stored chunk failed to decode; not served');
        opts.onCorrupt?.(r.id);
        return { header: encodeRecordHeader(r.id, undefined), data: undefined };
      }
      const data = Buffer.from(plain.buffer, plain.byteOffset, plain.length);
      return { header: encodeRecordHeader(r.id, data.length), data };
    };
    const share = this.budget.acquire();
    const checked = new Set<string>();
    const verify = opts.verifyOnServe
      ? (id: string) => !verified.fresh(id) && (checked.add(id), true)
      : false;
    const outgoing = c.env?.outgoing;
    const read = {
      verify,
      runBytes: share.runBytes,
      aheadRuns: share.aheadRuns,
      stored: true,
      ...(outgoing ? { pool } : {}),
    };
    const records = this.hot.readMany(this.chunks, ids, read);
    if (!outgoing) {
      const parts: Buffer[] = [];
      try {
        for await (const r of records) {
          if (r.problem && isDepotsyncError(r.problem, 'corrupt')) opts.onCorrupt?.(r.id);
          const { header, data } = framed(r);
          parts.push(header);
          if (data) parts.push(data);
        }
      } finally {
        share.release();
      }
      return c.body(new Uint8Array(Buffer.concat(parts)), 200, { 'content-type': contentType });
    }
    // Hot path: records go straight to the socket (the store reads back-to-back records in runs, a
    // few runs ahead); writes are corked so a run leaves as one large TLS write instead of two small
    // ones per chunk, and no more than the response's share of memory waits on the socket.
    outgoing.writeHead(200, { 'content-type': contentType });
    let corked = 0;
    try {
      outgoing.cork();
      for await (const r of records) {
        if (outgoing.destroyed) break;
        if (r.problem && isDepotsyncError(r.problem, 'corrupt')) {
          log.error({ chunk: r.id }, 'stored chunk failed verification; not served');
          opts.onCorrupt?.(r.id);
        }
        if (r.data && checked.has(r.id)) verified.add(r.id);
        // A run's buffer goes back to the pool when the write of its last record has completed
        // (writes complete in order, so every earlier record of the run is out too).
        const release = r.release;
        const { header, data } = framed(r);
        if (!data) {
          outgoing.write(header, release && ((e) => !e && release()));
          continue;
        }
        outgoing.write(header);
        corked += data.length;
        opts.onServed?.('chunk', data.length, r.plainLength ?? data.length);
        if (corked < share.flushBytes) {
          outgoing.write(data, release && ((e) => !e && release()));
          continue;
        }
        corked = 0;
        const flushed = new Promise<void>((resolve) =>
          outgoing.write(data, (e) => {
            if (!e) release?.();
            resolve();
          }),
        );
        outgoing.uncork();
        if (outgoing.writableNeedDrain || outgoing.writableLength > share.flushBytes)
          await untilOrClose(outgoing, flushed);
        outgoing.cork();
      }
    } finally {
      share.release();
      outgoing.uncork();
      outgoing.end();
    }
    return RESPONSE_ALREADY_SENT;
  }
}
