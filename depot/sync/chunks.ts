import { decodeManifest, manifestChunks } from '../../src/content/manifest.js';
import { collectGarbage } from '../../src/heap-collection.js';
import type { ChunkWant } from '../../src/read/chunk-download.js';
import type { Logger } from '../../src/log.js';
import type { ChunkInput } from '../../src/store/chunk-id.js';
import type { PutResult } from '../../src/store/chunk-store.js';
import { ChunkStream, type StreamTarget } from '../../src/store/chunk-stream.js';
import type { DepotDb } from '../db/depot-db.js';
import type { TokenBucket } from './bandwidth.js';

/** What the sync needs from the chunk store (a wrapper can inject faults in tests). */
export interface SyncStore extends StreamTarget {
  missing(ids: readonly string[]): string[];
  putMany(chunks: readonly ChunkInput[]): Promise<PutResult>;
  /** A stored chunk's bytes: the base a chunk delta is applied to (no deltas without it). */
  get?(id: string): Promise<Uint8Array>;
}

/** A chunk the sync lacks: its id and the length its verified manifest lists. */
export type ChunkNeed = ChunkWant;

/**
 * The chunks that targets of the served or pending generation still lack. Targets found complete
 * are marked so (the next sync skips them); `pendingTargets` are those waiting for `needs`.
 */
export function planMissing(
  db: DepotDb,
  store: SyncStore,
): { needs: ChunkNeed[]; pendingTargets: string[]; bytes: number } {
  const needs = new Map<string, number>();
  const complete: string[] = [];
  const pendingTargets: string[] = [];
  for (const t of db.incompleteTargets()) {
    const lengths = new Map<string, number>();
    for (const c of manifestChunks(decodeManifest(t.bytes, { what: `stored manifest ${t.name}` })))
      lengths.set(c.id, c.length);
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

/** Counts the bytes a sync receives (metadata, manifests, chunks, revocation list). */
export class ByteCounter {
  bytes = 0;
  add(n: number): void {
    this.bytes += n;
  }
}

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
      // The buffers of the checkpoints just written are garbage now: return them (src/heap-collection.ts).
      // Not for small amounts: a full collection of a depot holding a large
      // catalog takes tens of milliseconds.
      sinceCollect += bytes;
      if (sinceCollect >= COLLECT_AFTER_BYTES) {
        sinceCollect = 0;
        collectGarbage();
      }
      deps.onStored?.(chunks, bytes);
    },
  });
}
