import { setMaxListeners } from 'node:events';
import type { ApplyZstdDelta } from '../deltas/apply.js';
import { rebuildWith } from '../deltas/apply.js';
import type { Logger } from '../log.js';
import { HttpError } from '../net/http-error.js';
import type { ChunkInput } from '../store/chunk-id.js';
import { planBatches } from '../wire/chunk-batch.js';
import { CHUNK_DELTA_LIMITS, DeltaDecoder, type DeltaPair } from '../wire/chunk-delta.js';
import type { ReadClient } from './client.js';
import type { ChunkWant } from './chunk-download.js';
import { verifiedChunk } from './verify.js';
import { plainBytes } from '../store/encoding.js';

/** A chunk to ask for as a delta against `bases` (src/content/delta-pairs.ts), which the receiver holds. */
export interface DeltaWant extends ChunkWant {
  bases: string[];
  offset: number;
}

export interface DeltaDownloadOptions<N extends DeltaWant> {
  needs: readonly N[];
  source: Pick<ReadClient, 'name' | 'delta' | 'explain'>;
  /** The concatenated base chunks (unverified is fine: the rebuilt chunk is hashed), or why not. */
  readBase(ids: readonly string[]): Promise<Uint8Array | string>;
  applyDelta: ApplyZstdDelta;
  batchMaxBytes: number;
  batchMaxChunks: number;
  /** Verified chunks, in the order they arrive; an error here (disk) ends the download. */
  deliver(need: N, chunk: ChunkInput): Promise<void>;
  /** Longest one request may take, request to last byte; none when undefined. */
  requestTimeoutMs?: number | undefined;
  /** Errors that end the download at once (a refused certificate) instead of a fallback. */
  fatal?: (e: unknown) => boolean;
  log: Logger;
}

export interface DeltaDownloadResult {
  /** Verified chunks delivered: rebuilt from deltas, or sent whole by the source. */
  rebuilt: number;
  whole: number;
  /** Records refused (no base, undecodable, wrong bytes): left for the whole-chunk download. */
  refused: number;
  /** Bytes of response bodies received. */
  wireBytes: number;
  /** The source does not serve `POST /v1/chunks/delta`: nothing more was asked. */
  unsupported: boolean;
}

class DeliverFailure extends Error {
  constructor(readonly error: unknown) {
    super((error as Error)?.message ?? String(error));
  }
}

/**
 * Chunks as deltas from one source, batch after batch (`POST /v1/chunks/delta`, zstd records
 * accepted). Only an optimisation: every rebuilt or whole chunk is hashed against its id before it is
 * delivered, and whatever does not arrive verified (a record refused, a batch cut off, a source
 * without the route) is simply not delivered: the caller downloads what is left whole. Only a failed
 * delivery (disk) and a `fatal` error end it with an error.
 */
export async function downloadDeltas<N extends DeltaWant>(
  o: DeltaDownloadOptions<N>,
): Promise<DeltaDownloadResult> {
  const result: DeltaDownloadResult = { rebuilt: 0, whole: 0, refused: 0, wireBytes: 0, unsupported: false };
  if (o.needs.length === 0) return result;
  const batches = planBatches(
    o.needs,
    o.batchMaxBytes,
    Math.min(o.batchMaxChunks, CHUNK_DELTA_LIMITS.maxPairs),
  );
  for (const [i, batch] of batches.entries()) {
    try {
      await deltaBatch(batch, o, result);
    } catch (e) {
      if (e instanceof DeliverFailure) throw e.error;
      if (o.fatal?.(e)) throw e;
      if (e instanceof HttpError && (e.status === 404 || e.status === 405)) {
        result.unsupported = true;
        o.log.info({ source: o.source.name }, 'source does not serve chunk deltas; fetching whole chunks');
        return result;
      }
      o.log.warn(
        { source: o.source.name, batch: i, pairs: batch.length, err: (e as Error).message },
        'chunk delta batch failed; its chunks are fetched whole',
      );
    }
  }
  return result;
}

async function deltaBatch<N extends DeltaWant>(
  batch: readonly N[],
  o: DeltaDownloadOptions<N>,
  result: DeltaDownloadResult,
): Promise<void> {
  const abort = new AbortController();
  setMaxListeners(16, abort.signal);
  const timer =
    o.requestTimeoutMs === undefined
      ? undefined
      : setTimeout(
          () => abort.abort(new Error(`chunk delta batch took over ${o.requestTimeoutMs} ms`)),
          o.requestTimeoutMs,
        );
  try {
    const pairs: DeltaPair[] = batch.map((n) => ({ bases: n.bases, offset: n.offset, target: n.id }));
    const res = await o.source.delta(
      pairs,
      batch.map((n) => n.length),
      abort.signal,
      true,
      false,
      true,
    );
    const decoder = new DeltaDecoder(
      batch.map((n) => n.id),
      batch.reduce((m, n) => Math.max(m, n.length), 0),
      `chunk delta response from ${o.source.name}`,
    );
    const refuse = (id: string, why: string) => {
      result.refused++;
      o.log.warn(
        { chunk: id, source: o.source.name, reason: why },
        'chunk delta refused; the chunk is fetched whole',
      );
    };
    let index = 0;
    try {
      for await (const piece of res.body) {
        const buf = piece as Buffer;
        result.wireBytes += buf.length;
        for (const rec of decoder.push(buf)) {
          const need = batch[index++]!; // the decoder holds records to the request's order
          if (rec.kind === 'absent') continue;
          let data: Uint8Array;
          if (rec.kind === 'whole') data = rec.data;
          else if (rec.kind === 'stored') {
            // A whole chunk as its stored zstd frame, decoded within the chunk's signed length.
            try {
              data = plainBytes('zstd', rec.frame, need.length, `chunk ${rec.target}`);
            } catch (e) {
              refuse(rec.target, (e as Error).message);
              continue;
            }
          } else {
            // Kind 5 names its own bases: chunks of the old version, which readBase finds or refuses.
            const base = await o.readBase(rec.kind === 'chosen' ? rec.bases : need.bases);
            if (typeof base === 'string') {
              refuse(rec.target, base);
              continue;
            }
            const out = rebuildWith(o.applyDelta, base, rec, need.length);
            if (typeof out === 'string') {
              refuse(rec.target, out);
              continue;
            }
            data = out;
          }
          // Threat: a lying source or a damaged path. The same check as every downloaded chunk.
          const chunk = data.length === need.length ? verifiedChunk(rec.target, data) : undefined;
          if (!chunk) {
            refuse(
              rec.target,
              `its ${rec.kind === 'whole' ? 'bytes' : 'rebuilt bytes'} do not hash to its id`,
            );
            continue;
          }
          try {
            await o.deliver(need, chunk);
          } catch (e) {
            throw new DeliverFailure(e);
          }
          if (rec.kind === 'whole') result.whole++;
          else result.rebuilt++;
        }
      }
      decoder.finish();
    } catch (e) {
      if (e instanceof DeliverFailure) throw e;
      throw o.source.explain(e);
    }
  } finally {
    if (timer) clearTimeout(timer);
  }
}
