import { planBatches } from '../../src/wire/chunk-batch.js';
import type { Logger } from 'pino';
import type { Manifest } from '../../src/content/manifest.js';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import { digestEquals } from '../../src/hash/blake3.js';
import { hashedChunk, type ChunkInput } from '../../src/store/chunk-id.js';
import type { SizedBufferPool } from '../../src/store/buffer-pool.js';
import { BatchDecoder } from '../../src/wire/chunk-batch.js';
import { consume } from '../../src/net/consume.js';
import { fatalRefusal, type RemoteSource } from './remote.js';

/** One distinct chunk of the package: where it sits in the hash tree and every place it is written. */
export interface ChunkNeed {
  id: string;
  length: number;
  places: Array<{ fileIndex: number; offset: number }>;
}

/** The distinct chunks of a manifest (a chunk repeated in the package is downloaded once). */
export function planChunks(m: Manifest): ChunkNeed[] {
  const byId = new Map<string, ChunkNeed>();
  m.files.forEach((f, fileIndex) => {
    let offset = 0;
    for (const c of f.chunks) {
      const need = byId.get(c.id);
      if (need) need.places.push({ fileIndex, offset });
      else byId.set(c.id, { id: c.id, length: c.length, places: [{ fileIndex, offset }] });
      offset += c.length;
    }
  });
  return [...byId.values()];
}

/**
 * Check received bytes before anything is written (arbitrary-software attack by a mirror, or damage
 * on the way): the length the manifest lists and BLAKE3 equal to the chunk id (constant time). The id
 * itself is a leaf of the signed hash tree: `decodeManifest` rebuilt the tree from the manifest's chunk
 * list and refused the manifest unless its root is the one the catalog signed, so proving each leaf
 * again per chunk (14 hashes at 16,000 chunks) would check the same thing a second time.
 */
export function verifyChunk(need: ChunkNeed, data: Uint8Array, source: string): ChunkInput {
  if (data.length !== need.length) {
    throw new DepotsyncError('hash-mismatch', `chunk ${need.id} from ${source}: ${data.length} bytes, the manifest lists ${need.length}`, { hint: 'the source serves damaged or forged content; the agent uses another source' });
  }
  const chunk = hashedChunk(data);
  if (!digestEquals(chunk.id, need.id)) {
    throw new DepotsyncError('hash-mismatch', `chunk ${need.id} from ${source}: its bytes hash to ${chunk.id}; not written`, { hint: 'the source serves damaged or forged content; the agent uses another source' });
  }
  return chunk;
}

export interface DownloadOptions {
  needs: readonly ChunkNeed[];
  /** In order of preference. */
  sources: readonly RemoteSource[];
  concurrency: number;
  batchMaxBytes: number;
  batchMaxChunks: number;
  /** Longest one batch may take, request to last byte (slow retrieval: a source that keeps the
   * minimum rate but would still take forever). */
  requestTimeoutMs: number;
  verify(need: ChunkNeed, data: Uint8Array, source: string): ChunkInput;
  /**
   * Write verified chunks (into the staging folder). An error here is local (disk) and ends the fetch.
   * `release()` says the chunks' bytes are no longer needed (their buffers are recycled): call it once
   * nothing holds them.
   */
  deliver(chunks: Array<{ need: ChunkNeed; chunk: ChunkInput }>, release: () => void): Promise<void>;
  /** A source failed (network, slow, oversized, forged content): it is not asked again in this fetch. */
  onSourceFailed(remote: RemoteSource, error: unknown): void;
  /** Gather chunks that span network pieces into recycled buffers (given back on `deliver`'s release). */
  pool?: SizedBufferPool;
  log: Logger;
}

interface Batch {
  needs: ChunkNeed[];
  /** Sources that said they do not have these chunks. */
  avoid: Set<string>;
}

class LocalError extends Error {
  constructor(readonly inner: unknown) {
    super('local');
  }
}

/** Verified chunks are handed to `deliver` in groups of about this many bytes (one cache commit each). */
const DELIVER_BYTES = 4 * 1024 * 1024;

/**
 * Download `needs` in batches (`POST /v1/chunks/batch`), `concurrency` at a time, from the first
 * source that has not failed. When a source errors, stalls (slow retrieval), sends more than it
 * declared (endless data) or sends a chunk that does not verify, the chunks it has not delivered go
 * back on the queue for the next source; chunks it reports missing go to another source without
 * blaming it. Returns chunk bytes received per source name.
 */
export async function downloadChunks(o: DownloadOptions): Promise<Map<string, number>> {
  const bySource = new Map<string, number>();
  const queue: Batch[] = planBatches(o.needs, o.batchMaxBytes, o.batchMaxChunks).map((needs) => ({ needs, avoid: new Set() }));
  const failed = new Map<string, unknown>();
  const controllers = new Map(o.sources.map((s) => [s.name, new AbortController()]));
  let fatal: unknown;

  const fail = (remote: RemoteSource, e: unknown) => {
    if (failed.has(remote.name)) return;
    failed.set(remote.name, e);
    controllers.get(remote.name)?.abort();
    o.onSourceFailed(remote, e);
  };

  const runBatch = async (batch: Batch, remote: RemoteSource): Promise<Batch[]> => {
    const ids = batch.needs.map((n) => n.id);
    const byId = new Map(batch.needs.map((n) => [n.id, n]));
    const done = new Set<string>();
    const absent: ChunkNeed[] = [];
    let pending: Array<{ need: ChunkNeed; chunk: ChunkInput; block?: ArrayBuffer }> = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pending.length === 0) return;
      const group = pending;
      pending = [];
      pendingBytes = 0;
      const pool = o.pool;
      const release = pool
        ? () => {
            for (const g of group) if (g.block) pool.give(g.block);
          }
        : () => undefined;
      try {
        await o.deliver(group, release);
      } catch (e) {
        throw new LocalError(e);
      }
      for (const g of group) done.add(g.need.id);
      bySource.set(remote.name, (bySource.get(remote.name) ?? 0) + group.reduce((s, g) => s + g.need.length, 0));
    };
    const rest = (): Batch[] => {
      const missing = new Set(absent);
      const left = batch.needs.filter((n) => !done.has(n.id) && !missing.has(n));
      const out: Batch[] = [];
      if (left.length) out.push({ needs: left, avoid: batch.avoid });
      if (absent.length) out.push({ needs: absent, avoid: new Set([...batch.avoid, remote.name]) });
      return out;
    };
    const maxChunk = batch.needs.reduce((m, n) => Math.max(m, n.length), 0);
    const maxBytes = batch.needs.reduce((s, n) => s + 36 + n.length, 0);
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), o.requestTimeoutMs);
    const signal = AbortSignal.any([(controllers.get(remote.name) as AbortController).signal, deadline.signal]);
    try {
      const res = await remote.batch(ids, maxBytes, signal);
      const decoder = new BatchDecoder(ids, maxChunk, `chunk batch from ${remote.name}`, o.pool);
      await consume(res.body, (piece) => {
        for (const rec of decoder.push(piece)) {
          const need = byId.get(rec.id) as ChunkNeed;
          if (!rec.data) {
            absent.push(need);
            continue;
          }
          // Verified before it is written anywhere: a chunk that does not match is never stored.
          const chunk = o.verify(need, rec.data, remote.name);
          pending.push(rec.block ? { need, chunk, block: rec.block } : { need, chunk });
          pendingBytes += rec.data.length;
        }
        return pendingBytes >= DELIVER_BYTES ? flush() : undefined;
      });
      decoder.finish();
      await flush();
      if (absent.length) o.log.debug({ source: remote.name, missing: absent.length }, 'source lacks chunks; asking another');
      return rest();
    } catch (caught) {
      if (caught instanceof LocalError) throw caught.inner;
      const e = deadline.signal.aborted
        ? new DepotsyncError('timeout', `chunk batch of ${ids.length} from ${remote.name}: not complete after ${o.requestTimeoutMs} ms`, { hint: 'the source is too slow; the agent uses the next one', cause: caught })
        : caught;
      // Keep what arrived intact before the failure: the retry asks only for the rest.
      await flush().catch((le: unknown) => Promise.reject(le instanceof LocalError ? le.inner : le));
      if (fatalRefusal(e)) throw e;
      if (!failed.has(remote.name)) {
        o.log.warn({ source: remote.name, err: (e as Error).message }, 'chunk source failed; using the next source');
        fail(remote, e);
      }
      return rest();
    } finally {
      clearTimeout(timer);
    }
  };

  const worker = async () => {
    for (let batch = queue.shift(); batch !== undefined && fatal === undefined; batch = queue.shift()) {
      const b = batch;
      const remote = o.sources.find((s) => !failed.has(s.name) && !b.avoid.has(s.name));
      if (!remote) {
        fatal = noSourceLeft(b, o.sources, failed);
        return;
      }
      try {
        queue.push(...(await runBatch(b, remote)));
      } catch (e) {
        fatal ??= e;
        for (const c of controllers.values()) c.abort();
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency, queue.length)) }, worker));
  if (fatal !== undefined) throw fatal;
  // No leftovers: a worker only stops on an empty queue, and the one that re-queues keeps going.
  return bySource;
}

function noSourceLeft(batch: Batch, sources: readonly RemoteSource[], failed: Map<string, unknown>): DepotsyncError {
  const reasons = sources.map((s) => `${s.name}: ${failed.has(s.name) ? (failed.get(s.name) as Error).message : batch.avoid.has(s.name) ? 'does not have it' : 'not tried'}`);
  const first = [...failed.values()][0];
  const code = isDepotsyncError(first) ? first.code : batch.avoid.size ? 'not-found' : 'network';
  return new DepotsyncError(code, `chunk ${batch.needs[0]?.id} (and ${batch.needs.length - 1} more): no source could deliver it verified (${reasons.join('; ')})`, {
    hint: 'the chunks verified so far are cached; run the fetch again when a depot or the master is reachable',
    cause: first,
  });
}
