import { setMaxListeners } from 'node:events';
import { DepotsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import type { StreamResponse } from '../net/client.js';
import { consume } from '../net/consume.js';
import type { SizedBufferPool } from '../store/buffer-pool.js';
import type { ChunkInput } from '../store/chunk-id.js';
import {
  BATCH_CONTENT_TYPE_V2,
  BATCH_RECORD_OVERHEAD,
  BatchDecoder,
  planBatches,
} from '../wire/chunk-batch.js';
import { receivedChunk } from './verify.js';

/** Where chunk batches come from (a `ReadClient`, or anything answering `POST /v1/chunks/batch`). */
export interface ChunkSource {
  readonly name: string;
  /**
   * `zstd`: ask for records as the source stores them (format 2, compressed where stored so); the
   * response's content type says which format came.
   */
  batch(
    ids: readonly string[],
    maxBytes: number,
    signal: AbortSignal,
    opts?: { zstd: boolean },
  ): Promise<StreamResponse>;
}

/** A chunk to download: its id (BLAKE3) and the length the verified manifest lists. */
export interface ChunkWant {
  id: string;
  length: number;
}

export interface DownloadOptions<N extends ChunkWant, S extends ChunkSource = ChunkSource> {
  needs: readonly N[];
  /** In order of preference: a batch goes to the first source that has not failed (failover). */
  sources: readonly S[];
  concurrency: number;
  batchMaxBytes: number;
  batchMaxChunks: number;
  /**
   * Store or write verified chunks: their bytes are recycled once the promise resolves. An error here
   * is local (disk) and ends the download.
   */
  deliver(group: ReadonlyArray<{ need: N; chunk: ChunkInput }>): Promise<void>;
  /** Verified bytes gathered before one `deliver` (bounds the memory of a batch in flight). */
  deliverBytes: number;
  /** Longest one request may take, request to last byte (slow retrieval); none when undefined. */
  requestTimeoutMs?: number | undefined;
  /**
   * Tries of one batch at one source before the source counts as failed (1: fail over at once); the
   * chunks that arrived intact are kept, a retry asks for the rest after `retryDelayMs` × 2^(try − 1).
   */
  attempts: number;
  retryDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** Errors worth another try at the same source; default none. */
  retryable?: (e: unknown) => boolean;
  /**
   * Ask for compressed records (default true). A source that sends one that does not decode is asked
   * for plain records for the rest of the download.
   */
  compressed?: boolean;
  /** Errors that end the download at once, whatever sources are left (a refused certificate). */
  fatal?: (e: unknown) => boolean;
  /**
   * The error when chunks are left that no source can deliver: `failed` the sources that failed and
   * why, `lacking` those that said they do not have the chunks. Default: the first source failure,
   * else a 'not-found' naming the chunks.
   */
  exhausted?: (
    needs: readonly N[],
    failed: ReadonlyMap<string, unknown>,
    lacking: ReadonlySet<string>,
  ) => unknown;
  /** A source failed (network, slow, oversized, forged content): it is not asked again in this download. */
  onSourceFailed?: (source: S, error: unknown) => void;
  /** Each piece of a response as it arrives, before it is decoded (byte counting, bandwidth limit). */
  onPiece?: (bytes: number) => Promise<void> | undefined;
  /** Gather chunks that span network pieces into recycled buffers (given back after `deliver`). */
  pool?: SizedBufferPool | undefined;
  log: Logger;
}

interface Batch<N> {
  needs: N[];
  /** Sources that said they do not have these chunks. */
  lacking: Set<string>;
}

/** What one request delivered: chunks stored, chunks the source lacks, and why it stopped early. */
interface Attempt<N> {
  done: Set<string>;
  absent: N[];
  error?: unknown;
  /** A compressed record did not decode within its plain length (bomb, damage, cut): retry plain. */
  undecodable?: boolean;
}

class LocalError extends Error {
  constructor(readonly inner: unknown) {
    super('local');
  }
}

/**
 * Download `needs` in batches (`POST /v1/chunks/batch`), `concurrency` at a time. Each chunk is hashed
 * as it arrives and compared with its id (and its listed length); only matching chunks reach
 * `deliver`, so damaged or forged bytes are never stored. What arrived intact before a failure is
 * delivered, so a retry asks only for the rest. A source that errors, stalls, sends more than it
 * declared (endless data) or a chunk that does not verify is retried up to `attempts` times, then
 * failed: the chunks it has not delivered go to the next source. Chunks a source reports missing go
 * to another source without blaming it (or, when none is left, count as a 'not-found' of that source).
 * Compressed records (format 2) are decoded with the length the manifest lists as a hard cap and the
 * plain bytes verified; what reaches `deliver` carries the frame as received, to be stored as it came.
 * A record that does not decode fails the attempt with its typed error ('too-large', 'corrupt',
 * 'truncated'), and the source is asked again, once, for plain records.
 * Returns chunk bytes delivered per source name (plain); `wireBytes` (when given) adds, per source, the
 * bytes of the chunk records as received.
 */
export async function downloadChunks<N extends ChunkWant, S extends ChunkSource>(
  o: DownloadOptions<N, S>,
  wireBytes?: Map<string, number>,
): Promise<Map<string, number>> {
  const bySource = new Map<string, number>();
  /** Sources that sent a compressed record that did not decode: asked for plain records from then on. */
  const plainOnly = new Set<string>();
  const queue: Array<Batch<N>> = planBatches(o.needs, o.batchMaxBytes, o.batchMaxChunks).map((needs) => ({
    needs,
    lacking: new Set(),
  }));
  const failed = new Map<string, unknown>();
  const controllers = new Map(o.sources.map((s) => [s.name, new AbortController()]));
  // One listener per request in flight on a source's signal.
  for (const c of controllers.values()) setMaxListeners(o.concurrency + 8, c.signal);
  const retryable = o.retryable ?? (() => false);
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  let stopped: { error: unknown } | undefined;

  const exhausted = (b: Batch<N>): unknown => (o.exhausted ?? defaultExhausted)(b.needs, failed, b.lacking);
  const usable = (lacking: ReadonlySet<string>) =>
    o.sources.find((s) => !failed.has(s.name) && !lacking.has(s.name));
  const fail = (source: S, e: unknown) => {
    if (failed.has(source.name)) return;
    failed.set(source.name, e);
    controllers.get(source.name)?.abort();
    o.log.warn(
      { source: source.name, err: (e as Error)?.message },
      'chunk source failed; using the next source',
    );
    o.onSourceFailed?.(source, e);
  };

  /** One request for `needs` to `source`; throws only LocalError (the sink failed). */
  const attempt = async (needs: readonly N[], source: S): Promise<Attempt<N>> => {
    const ids = needs.map((n) => n.id);
    const byId = new Map(needs.map((n) => [n.id, n]));
    const got: Attempt<N> = { done: new Set(), absent: [] };
    const bad: string[] = [];
    let undecodable: unknown;
    let wire = 0;
    let pending: Array<{ need: N; chunk: ChunkInput }> = [];
    let blocks: ArrayBuffer[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pending.length === 0) return;
      const group = pending;
      const used = blocks;
      pending = [];
      blocks = [];
      pendingBytes = 0;
      try {
        await o.deliver(group);
      } catch (e) {
        throw new LocalError(e);
      }
      if (o.pool) for (const b of used) o.pool.give(b);
      let bytes = 0;
      for (const g of group) {
        got.done.add(g.need.id);
        bytes += g.need.length;
      }
      bySource.set(source.name, (bySource.get(source.name) ?? 0) + bytes);
      if (wireBytes) wireBytes.set(source.name, (wireBytes.get(source.name) ?? 0) + wire);
      wire = 0;
    };
    const maxChunk = needs.reduce((m, n) => Math.max(m, n.length), 0);
    // A compressed record is never sent larger than its plain form (encoding.ts keeps only savings).
    const maxBytes = needs.reduce((s, n) => s + BATCH_RECORD_OVERHEAD + n.length, 0);
    const zstd = (o.compressed ?? true) && !plainOnly.has(source.name);
    const deadline = o.requestTimeoutMs === undefined ? undefined : new AbortController();
    const timer = deadline && setTimeout(() => deadline.abort(), o.requestTimeoutMs);
    const own = controllers.get(source.name)!.signal;
    const signal = deadline ? AbortSignal.any([own, deadline.signal]) : own;
    // Records spanning network pieces are gathered into recycled buffers, given back once delivered:
    // garbage buffers waiting for a GC were a third of the depot's memory.
    let decoder!: BatchDecoder;
    const onRecords = (piece: Buffer): Promise<void> | undefined => {
      for (const rec of decoder.push(piece)) {
        const need = byId.get(rec.id)!; // the decoder holds records to the request's ids and order
        if (!rec.data) {
          got.absent.push(need);
          continue;
        }
        // Decoded (capped at the listed length) and hashed as it arrives: a chunk that does not match
        // is dropped, never delivered.
        let chunk: ChunkInput | undefined;
        try {
          chunk = receivedChunk(
            need,
            rec.encoding,
            rec.data,
            rec.plainLength,
            source.name,
            decoder.format === 2,
          );
        } catch (e) {
          undecodable ??= e;
        }
        if (!chunk) {
          bad.push(rec.id);
          if (rec.block) o.pool?.give(rec.block);
          o.log.warn(
            { chunk: rec.id, bytes: rec.data.length, source: source.name },
            'received chunk does not match its id; dropped',
          );
          continue;
        }
        pending.push({ need, chunk });
        if (rec.block) blocks.push(rec.block);
        // A decoded chunk holds its plain bytes beside the frame: both count against the hand-off size.
        pendingBytes += rec.data.length + (chunk.data === rec.data ? 0 : chunk.data.length);
        wire += rec.data.length + (decoder.format === 2 ? BATCH_RECORD_OVERHEAD : 36);
      }
      return pendingBytes >= o.deliverBytes ? flush() : undefined;
    };
    const onPiece = o.onPiece;
    try {
      const res = await source.batch(ids, maxBytes, signal, { zstd });
      const format = String(res.headers['content-type'] ?? '').startsWith(BATCH_CONTENT_TYPE_V2) ? 2 : 1;
      decoder = new BatchDecoder(ids, maxChunk, `chunk batch from ${source.name}`, o.pool, format);
      // Piece by piece as they arrive (no `for await`: it concatenates what is buffered into new memory).
      // Synchronous unless a hook or a delivery waits: a promise per piece would pause the stream each time.
      const each = onPiece
        ? (piece: Buffer) => {
            const wait = onPiece(piece.length);
            return wait ? wait.then(() => onRecords(piece)) : onRecords(piece);
          }
        : onRecords;
      await consume(res.body, each);
      decoder.finish();
    } catch (caught) {
      if (caught instanceof LocalError) throw caught;
      got.error =
        deadline?.signal.aborted && !own.aborted
          ? new DepotsyncError(
              'timeout',
              `chunk batch of ${ids.length} from ${source.name}: not complete after ${o.requestTimeoutMs} ms`,
              {
                hint: 'the source is too slow; the chunks are asked for from the next source',
                cause: caught,
              },
            )
          : caught;
    } finally {
      if (timer) clearTimeout(timer);
      // Keep what arrived intact, even when the stream was cut: the retry asks only for the rest.
      await flush();
    }
    if (got.error === undefined && undecodable !== undefined) {
      got.error = undecodable;
      got.undecodable = true;
    } else if (got.error === undefined && bad.length) {
      const more = bad.length > 1 ? ` (and ${bad.length - 1} more in the batch)` : '';
      got.error = new DepotsyncError(
        'hash-mismatch',
        `chunk ${bad[0]} from ${source.name}: its bytes do not hash to its id${more}; not stored`,
        {
          hint:
            'the source (or the network path) delivers damaged or forged data; ' +
            'the chunks are asked for again or from another source',
        },
      );
    }
    return got;
  };

  /** A batch at one source, with its retries; returns what is left for other sources. */
  const runBatch = async (batch: Batch<N>, source: S): Promise<Array<Batch<N>>> => {
    const out: Array<Batch<N>> = [];
    const lacking = new Set([...batch.lacking, source.name]);
    let needs = batch.needs;
    for (let tries = 1; ; tries++) {
      const got = await attempt(needs, source);
      if (stopped) return [];
      const absent = new Set(got.absent);
      const left = needs.filter((n) => !got.done.has(n.id) && !absent.has(n));
      let error = got.error;
      if (got.absent.length && usable(lacking)) {
        o.log.debug(
          { source: source.name, missing: got.absent.length },
          'source lacks chunks; asking another',
        );
        out.push({ needs: got.absent, lacking });
      } else if (got.absent.length) {
        // No other source might have them: a 'not-found' of this one, asked again like any failure.
        error ??= notFound(got.absent, source.name);
        left.push(...got.absent);
      }
      if (error === undefined) return out;
      if (o.fatal?.(error)) throw error;
      if (got.undecodable && !plainOnly.has(source.name) && left.length > 0) {
        // Fallback: the chunks that arrived intact are kept; the rest are asked for plain.
        plainOnly.add(source.name);
        o.log.warn(
          { source: source.name, left: left.length, err: (error as Error)?.message },
          'compressed chunk record did not decode; asking for plain records',
        );
        needs = left;
        tries--;
        continue;
      }
      // A source another batch has failed (its requests were aborted) is not retried.
      if (!failed.has(source.name) && tries < o.attempts && retryable(error)) {
        if (left.length === 0) return out;
        o.log.warn(
          { source: source.name, attempt: tries, left: left.length, err: (error as Error)?.message },
          'chunk batch failed; retrying',
        );
        await sleep((o.retryDelayMs ?? 0) * 2 ** (tries - 1));
        if (stopped) return [];
        needs = left;
        if (!failed.has(source.name)) continue;
      } else if (got.error === undefined) {
        // Only missing chunks, and no source left that might have them: not this source's fault.
        throw exhausted({ needs: left, lacking });
      } else {
        fail(source, error);
      }
      if (left.length) out.push({ needs: left, lacking: batch.lacking });
      return out;
    }
  };

  const stop = (e: unknown) => {
    stopped ??= { error: e };
    for (const c of controllers.values()) c.abort();
  };
  const worker = async () => {
    for (let batch = queue.shift(); batch !== undefined && !stopped; batch = queue.shift()) {
      const b = batch;
      const source = usable(b.lacking);
      if (!source) return stop(exhausted(b));
      try {
        queue.push(...(await runBatch(b, source)));
      } catch (e) {
        return stop(e instanceof LocalError ? e.inner : e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency, queue.length)) }, worker));
  if (stopped) throw stopped.error;
  // No leftovers: a worker only stops on an empty queue, and the one that re-queues keeps going.
  return bySource;
}

function notFound(absent: readonly ChunkWant[], source: string): DepotsyncError {
  return new DepotsyncError(
    'not-found',
    `chunk ${absent[0]!.id}: ${source} does not have it${absent.length > 1 ? ` (nor ${absent.length - 1} more)` : ''}`,
    {
      hint: 'the source is missing content of the generation it serves; it may be scrubbing or damaged',
    },
  );
}

function defaultExhausted(
  needs: readonly ChunkWant[],
  failed: ReadonlyMap<string, unknown>,
  lacking: ReadonlySet<string>,
): unknown {
  const first = [...failed.values()][0];
  if (first !== undefined) return first;
  return notFound(needs, [...lacking].join(', ') || 'no source');
}
