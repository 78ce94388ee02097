import { planBatches } from '../../src/wire/chunk-batch.js';
import { setMaxListeners } from 'node:events';
import PQueue from 'p-queue';
import { decodeManifest, manifestChunks } from '../../src/content/manifest.js';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import { digestEquals } from '../../src/hash/blake3.js';
import { collectGarbage } from '../../src/heap-collection.js';
import type { Logger } from '../../src/log.js';
import type { HttpClient } from '../../src/net/client.js';
import { consume } from '../../src/net/consume.js';
import { SizedBufferPool } from '../../src/store/buffer-pool.js';
import { hashedChunk, type ChunkInput } from '../../src/store/chunk-id.js';
import type { PutResult } from '../../src/store/chunk-store.js';
import { ChunkStream, type StreamTarget } from '../../src/store/chunk-stream.js';
import { BatchDecoder, BATCH_CONTENT_TYPE } from '../../src/wire/chunk-batch.js';
import type { DepotDb } from '../db/depot-db.js';
import type { TokenBucket } from './bandwidth.js';
import { explainUpstream, type ByteCounter } from './upstream.js';

/** What the sync needs from the chunk store (a wrapper can inject faults in tests). */
export interface SyncStore extends StreamTarget {
  missing(ids: readonly string[]): string[];
  putMany(chunks: readonly ChunkInput[]): Promise<PutResult>;
  /** A stored chunk's bytes: the base a chunk delta is applied to (no deltas without it). */
  get?(id: string): Promise<Uint8Array>;
}

export interface ChunkNeed {
  id: string;
  length: number;
}

/**
 * The chunks that targets of the served or pending generation still lack. Targets found complete
 * are marked so (the next sync skips them); `pendingTargets` are those waiting for `needs`.
 */
export function planMissing(db: DepotDb, store: SyncStore): { needs: ChunkNeed[]; pendingTargets: string[]; bytes: number } {
  const needs = new Map<string, number>();
  const complete: string[] = [];
  const pendingTargets: string[] = [];
  for (const t of db.incompleteTargets()) {
    const lengths = new Map<string, number>();
    for (const c of manifestChunks(decodeManifest(t.bytes, { what: `stored manifest ${t.name}` }))) lengths.set(c.id, c.length);
    const missing = store.missing([...lengths.keys()]);
    if (missing.length === 0) complete.push(t.name);
    else pendingTargets.push(t.name);
    for (const id of missing) needs.set(id, lengths.get(id)!);
  }
  if (complete.length) db.markComplete(complete);
  let bytes = 0;
  for (const n of needs.values()) bytes += n;
  return { needs: [...needs].map(([id, length]) => ({ id, length })), pendingTargets, bytes };
}

export { planBatches } from '../../src/wire/chunk-batch.js';

/** What a chunk delivery needs, whatever the upstream (network batches or a bundle file). */
export interface ChunkSinkDeps {
  store: SyncStore;
  counter: ByteCounter;
  bandwidth?: TokenBucket | undefined;
  concurrency: number;
  batchMaxBytes: number;
  batchMaxChunks: number;
  /** Bytes between two durable commits of the chunk stream (default CHUNK_STREAM_DEFAULTS). */
  checkpointBytes?: number;
  attempts: number;
  retryDelayMs: number;
  sleep: (ms: number) => Promise<void>;
  log: Logger;
  /** After each durable store of received chunks. */
  onStored?: (chunks: number, bytes: number) => void;
}

/** Bytes made durable between two forced garbage collections. */
const COLLECT_AFTER_BYTES = 128 * 1024 * 1024;

/** The chunk stream of one download: checkpointed writes, and the totals counted as they become durable. */
export function openChunkStream(deps: ChunkSinkDeps, total: { chunks: number; bytes: number }): ChunkStream {
  let sinceCollect = 0;
  return new ChunkStream(deps.store, {
    ...(deps.checkpointBytes === undefined ? {} : { checkpointBytes: deps.checkpointBytes }),
    onDurable: (chunks, bytes) => {
      total.chunks += chunks;
      total.bytes += bytes;
      // The buffers of the checkpoints just written are garbage now: return them (src/heap-collection.ts). Not for
      // small amounts: a full collection of a depot holding a large catalog takes tens of milliseconds.
      sinceCollect += bytes;
      if (sinceCollect >= COLLECT_AFTER_BYTES) {
        sinceCollect = 0;
        collectGarbage();
      }
      deps.onStored?.(chunks, bytes);
    },
  });
}

export interface ChunkFetchDeps extends ChunkSinkDeps {
  upstream: HttpClient;
}

/**
 * Threat: a mirror, a bundle file, a damaged disk or link delivering bytes that are not the chunk asked
 * for. The chunk (its BLAKE3 computed here) when its bytes hash to `id`, else undefined. The one check
 * every chunk passes before it is stored, online or offline.
 */
export function verifiedChunk(id: string, data: Uint8Array): ChunkInput | undefined {
  const chunk = hashedChunk(data);
  return digestEquals(chunk.id, id) ? chunk : undefined;
}

/** Errors worth another try from the same upstream: the network, a cut stream, a damaged chunk. */
function retryable(e: unknown): boolean {
  return isDepotsyncError(e) && ['network', 'timeout', 'truncated', 'hash-mismatch', 'not-found'].includes(e.code);
}

/**
 * Download `needs` in batches (`POST /v1/chunks/batch`), `concurrency` at a time (p-queue). Each
 * chunk is hashed as it arrives and compared with the id asked for; only matching chunks are stored
 * (damaged or forged bytes never reach the disk). What arrived intact before a failure is stored, so
 * a retry (or the next sync) asks only for the rest. The first fatal error (disk full, refused
 * certificate, retries exhausted) stops the other batches and is thrown.
 */
export async function fetchChunks(needs: readonly ChunkNeed[], deps: ChunkFetchDeps): Promise<{ chunks: number; bytes: number }> {
  const batches = planBatches(needs, deps.batchMaxBytes, deps.batchMaxChunks);
  const queue = new PQueue({ concurrency: deps.concurrency });
  const abort = new AbortController();
  setMaxListeners(deps.concurrency + 8, abort.signal); // one listener per request in flight
  const total = { chunks: 0, bytes: 0 };
  // One checkpointed stream for the whole download: the disk writes while batches arrive, with one
  // waited fdatasync per checkpoint instead of one per batch.
  const stream = openChunkStream(deps, total);
  const pool = new SizedBufferPool(64 * 1024, 1024 * 1024, 32 * 1024 * 1024);
  let failure: unknown;
  for (const [i, batch] of batches.entries()) {
    void queue.add(async () => {
      if (failure) return;
      try {
        await fetchWithRetry(batch, i, deps, stream, abort.signal, pool);
      } catch (e) {
        if (failure) return;
        failure = e;
        queue.clear();
        abort.abort();
      }
    });
  }
  await queue.onIdle();
  // What was written is committed (kept) even when the download failed: the next run skips it.
  try {
    await stream.end();
  } catch (e) {
    failure ??= e;
  }
  if (failure) throw failure;
  return total;
}

async function fetchWithRetry(batch: ChunkNeed[], index: number, deps: ChunkFetchDeps, stream: ChunkStream, signal: AbortSignal, pool: SizedBufferPool): Promise<void> {
  let remaining = batch;
  const received = new Set<string>();
  for (let attempt = 1; ; attempt++) {
    try {
      await fetchBatch(remaining, deps, stream, signal, received, pool);
      return;
    } catch (e) {
      if (signal.aborted || !retryable(e) || attempt >= deps.attempts) throw e;
      // Chunks received intact are in the stream (durable at its next checkpoint): ask for the rest.
      remaining = remaining.filter((n) => !received.has(n.id));
      deps.log.warn({ batch: index, attempt, left: remaining.length, err: (e as Error).message }, 'chunk batch failed; retrying');
      if (remaining.length === 0) return;
      await deps.sleep(deps.retryDelayMs * 2 ** (attempt - 1));
    }
  }
}

/** Chunk bytes verified before they are handed to the store's stream (bounds memory per batch). */
const HANDOFF_BYTES = 2 * 1024 * 1024;

async function fetchBatch(batch: ChunkNeed[], deps: ChunkFetchDeps, stream: ChunkStream, signal: AbortSignal, received: Set<string>, pool: SizedBufferPool): Promise<void> {
  const ids = batch.map((n) => n.id);
  const origin = deps.upstream.baseUrl.origin;
  const maxChunk = batch.reduce((m, n) => Math.max(m, n.length), 0);
  const maxBytes = batch.reduce((s, n) => s + 36 + n.length, 0);
  let res;
  try {
    res = await deps.upstream.request('POST', '/v1/chunks/batch', {
      headers: { 'content-type': 'application/json', accept: BATCH_CONTENT_TYPE },
      body: Buffer.from(JSON.stringify({ ids })),
      maxBytes,
      what: `chunk batch of ${ids.length}`,
      signal,
    });
  } catch (e) {
    throw explainUpstream(e, origin);
  }
  // Records spanning network pieces are gathered into recycled buffers, given back once the store's
  // stream has written them: garbage buffers waiting for a GC were a third of the depot's memory.
  const decoder = new BatchDecoder(ids, maxChunk, `chunk batch from ${origin}`, pool);
  let verified: ChunkInput[] = [];
  let blocks: ArrayBuffer[] = [];
  let verifiedBytes = 0;
  const bad: string[] = [];
  const absent: string[] = [];
  const flush = async (): Promise<void> => {
    if (verified.length === 0) return;
    const chunks = verified;
    const used = blocks;
    verified = [];
    blocks = [];
    verifiedBytes = 0;
    await stream.add(chunks);
    for (const b of used) pool.give(b);
    for (const c of chunks) received.add(c.id);
  };
  const onPiece = (buf: Buffer): Promise<void> | undefined => {
    deps.counter.add(buf.length);
    for (const rec of decoder.push(buf)) {
      if (!rec.data) {
        absent.push(rec.id);
        continue;
      }
      // Hash as it arrives; only a chunk whose BLAKE3 equals its id is ever stored.
      const chunk = verifiedChunk(rec.id, rec.data);
      if (!chunk) {
        bad.push(rec.id);
        if (rec.block) pool.give(rec.block);
        deps.log.warn({ chunk: rec.id, bytes: rec.data.length, upstream: origin }, 'received chunk does not match its id; dropped');
        continue;
      }
      verified.push(chunk);
      if (rec.block) blocks.push(rec.block);
      verifiedBytes += rec.data.length;
    }
    return verifiedBytes >= HANDOFF_BYTES ? flush() : undefined;
  };
  try {
    // Piece by piece as they arrive (no `for await`: it concatenates what is buffered into new memory).
    await consume(res.body, deps.bandwidth ? (buf) => deps.bandwidth!.take(buf.length).then(() => onPiece(buf)) : onPiece);
    decoder.finish();
  } finally {
    // Keep what arrived intact, even when the stream was cut: the retry asks only for the rest.
    await flush();
  }
  if (bad.length) {
    throw new DepotsyncError('hash-mismatch', `chunk ${bad[0]} from ${origin}: its bytes do not hash to its id${bad.length > 1 ? ` (and ${bad.length - 1} more in the batch)` : ''}; not stored`, {
      hint: 'the upstream (or the network path) delivers damaged or forged data; check its disk, or sync from another source',
    });
  }
  if (absent.length) {
    throw new DepotsyncError('not-found', `chunk ${absent[0]}: upstream ${origin} does not have it${absent.length > 1 ? ` (nor ${absent.length - 1} more)` : ''}`, {
      hint: 'the upstream is missing content of the generation it serves; it may be scrubbing or damaged',
    });
  }
}
