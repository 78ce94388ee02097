import { setMaxListeners } from 'node:events';
import PQueue from 'p-queue';
import { bundleDeltaPairs, pairChunkBases, type BundlePair } from '../../src/content/delta-pairs.js';
import { decodeManifest, type Manifest } from '../../src/content/manifest.js';
import type { DeltaCache } from '../../src/deltas/cache.js';
import { DepotsyncError } from '../../src/errors.js';
import { HttpError } from '../../src/net/http-error.js';
import type { ReadClient } from '../../src/read/client.js';
import { verifiedChunk } from '../../src/read/verify.js';
import { hashedChunk, type ChunkInput } from '../../src/store/chunk-id.js';
import { plainBytes } from '../../src/store/encoding.js';
import { digestEquals } from '../../src/hash/blake3.js';
import { planBatches } from '../../src/wire/chunk-batch.js';
import { rebuildFromRecord } from '../../src/deltas/rebuild.js';
import { chosenEntry } from '../../src/deltas/cache.js';
import { CHUNK_DELTA_LIMITS, DeltaDecoder } from '../../src/wire/chunk-delta.js';
import type { DepotDb } from '../db/depot-db.js';
import type { ChunkNeed, ChunkSinkDeps, SyncStore } from './chunks.js';

/**
 * Chunk deltas: a chunk the depot lacks, asked for as the difference from the chunk it
 * replaces, which the depot already holds (`POST /v1/chunks/delta`, src/wire/chunk-delta.ts). A 4 KiB
 * edit then moves about 4 KiB instead of the whole ~64 KiB chunk around it.
 *
 * Deltas are an optimisation, never a trust path: a rebuilt chunk is hashed and compared with its id
 * exactly like a downloaded one (`verifiedChunk`), and whatever a delta cannot deliver (the upstream
 * lacks the route, a record is malformed or lies, the connection is cut) is left to the whole-chunk
 * download that follows. Only a failure to store (disk full) and a refused certificate stop the sync.
 */

/** A chunk to fetch as a delta against `bases` (concatenated), chunks the depot's store holds. */
export interface DeltaNeed extends ChunkNeed {
  bases: string[];
  /** Where the chunk starts in the concatenated bases if the edit kept file offsets. */
  offset: number;
}

export interface DeltaFetchResult {
  /** Chunks newly stored, and their bytes. */
  chunks: number;
  bytes: number;
  /**
   * Of those: rebuilt from a delta, or sent whole by the upstream (it lacked the
   * base, or the overlap was small).
   */
  rebuilt: number;
  /** Of the rebuilt: from zstd deltas (against a window of the old file). */
  zstd?: number;
  /** Sent whole (counted in `whole`) as the upstream's stored zstd frame, kept as it came. */
  stored?: number;
  whole: number;
  /** Records refused (bad lengths, wrong bytes): those chunks are left for the whole-chunk download. */
  refused: number;
  /** The upstream does not serve `POST /v1/chunks/delta` (an older version): everything is fetched whole. */
  unsupported: boolean;
}

/**
 * Pair each needed chunk with the chunks it replaces (src/content/delta-pairs.ts): the targets still
 * lacking chunks against the served generation's versions of the same package. Only pairs whose bases
 * the store all holds are kept.
 */
export function pairBases(db: DepotDb, store: SyncStore, needs: readonly ChunkNeed[]): DeltaNeed[] {
  if (needs.length === 0) return [];
  const served = db.slotTargets('served');
  if (served.length === 0) return [];
  const load = (name: string, bytes?: Buffer) => (): Manifest | undefined => {
    const b = bytes ?? db.targetBytes(name);
    try {
      return b ? decodeManifest(b, { what: `stored manifest ${name}` }) : undefined;
    } catch {
      return undefined; // verified when it arrived; if it no longer decodes, it is simply no base
    }
  };
  const olds = served.map((t) => ({ name: t.name, path: t.path, load: load(t.name) }));
  const targets = db
    .incompleteTargets()
    .map((t) => ({ name: t.name, path: t.name.slice(65), load: load(t.name, t.bytes) })); // `{sha256}.{path}`
  const bases = pairChunkBases(targets, olds, new Set(needs.map((n) => n.id)));
  if (bases.size === 0) return [];
  const absent = new Set(store.missing([...new Set([...bases.values()].flatMap((b) => b.bases))]));
  const out: DeltaNeed[] = [];
  for (const n of needs) {
    const b = bases.get(n.id);
    if (b !== undefined && b.bases.every((id) => !absent.has(id)))
      out.push({ id: n.id, length: n.length, ...b });
  }
  return out;
}

/**
 * The pair list of an offline bundle's chunk-deltas section, as this depot computes it: its served
 * generation's versions against the new versions of the pending one (src/content/delta-pairs.ts; the
 * master computed the same list from the same manifests when it exported the bundle).
 */
export function bundlePairsFor(db: DepotDb): BundlePair[] {
  const served = db.slotTargets('served');
  const servedNames = new Set(served.map((t) => t.name));
  const version = (t: { name: string; path: string }) => ({
    name: t.name,
    path: t.path,
    load: (): Manifest | undefined => {
      const b = db.targetBytes(t.name);
      try {
        return b ? decodeManifest(b, { what: `stored manifest ${t.name}` }) : undefined;
      } catch {
        return undefined;
      }
    },
  });
  return bundleDeltaPairs(
    served.map(version),
    db
      .slotTargets('pending')
      .filter((t) => !servedNames.has(t.name))
      .map(version),
  );
}

export interface ChunkDeltaDeps extends ChunkSinkDeps {
  upstream: ReadClient;
  /** Where verified zstd deltas are kept, to serve them again to this depot's children and agents. */
  deltaCache?: DeltaCache;
}

/** Records whose base chunks are read ahead of the one being rebuilt. */
const BASE_READ_AHEAD = 8;

/** Errors that stop the sync: the depot cannot store, or the upstream refuses this depot. */
function fatal(e: unknown): boolean {
  return (
    e instanceof StoreFailure ||
    (e instanceof DepotsyncError && (e.code === 'unauthorized' || e.code === 'forbidden'))
  );
}

class StoreFailure extends Error {
  constructor(readonly error: unknown) {
    super((error as Error)?.message ?? String(error));
  }
}

/**
 * Fetch `needs` as deltas, in batches of at most `batchMaxBytes` of chunk and `maxPairs` pairs,
 * `concurrency` at a time. Verified chunks are stored; everything else stays missing for the
 * whole-chunk download (the caller plans it from the store afterwards).
 */
export async function fetchChunkDeltas(
  needs: readonly DeltaNeed[],
  deps: ChunkDeltaDeps,
): Promise<DeltaFetchResult> {
  const result: DeltaFetchResult = {
    chunks: 0,
    bytes: 0,
    rebuilt: 0,
    whole: 0,
    refused: 0,
    unsupported: false,
  };
  const read = deps.store.get?.bind(deps.store);
  if (!read || needs.length === 0) return result;
  const batches = planBatches(
    needs,
    deps.batchMaxBytes,
    Math.min(deps.batchMaxChunks, CHUNK_DELTA_LIMITS.maxPairs),
  );
  const queue = new PQueue({ concurrency: deps.concurrency });
  const abort = new AbortController();
  setMaxListeners(deps.concurrency + 8, abort.signal);
  let failure: unknown;
  const stop = (e?: unknown) => {
    if (e !== undefined) failure ??= e;
    queue.clear();
    abort.abort();
  };
  for (const [i, batch] of batches.entries()) {
    void queue.add(async () => {
      if (abort.signal.aborted) return;
      try {
        await deltaBatch(batch, read, deps, abort.signal, result);
      } catch (e) {
        if (abort.signal.aborted && !fatal(e)) return;
        if (fatal(e)) return stop(e instanceof StoreFailure ? e.error : e);
        if (e instanceof HttpError && (e.status === 404 || e.status === 405)) {
          result.unsupported = true;
          deps.log.info(
            { upstream: deps.upstream.name },
            'upstream does not serve chunk deltas; fetching whole chunks',
          );
          return stop();
        }
        deps.log.warn(
          { batch: i, pairs: batch.length, err: (e as Error).message },
          'chunk delta batch failed; its chunks are fetched whole',
        );
      }
    });
  }
  await queue.onIdle();
  if (failure) throw failure;
  return result;
}

async function deltaBatch(
  batch: readonly DeltaNeed[],
  read: (id: string) => Promise<Uint8Array>,
  deps: ChunkDeltaDeps,
  signal: AbortSignal,
  result: DeltaFetchResult,
): Promise<void> {
  const origin = deps.upstream.name;
  const maxChunk = batch.reduce((m, n) => Math.max(m, n.length), 0);
  // Bases are read from the store BASE_READ_AHEAD records ahead of the one being rebuilt (records come
  // in request order), so the disk and the network overlap; the first ones while the request is in flight.
  const baseReads: Array<Promise<Buffer | string> | undefined> = [];
  let nextRead = 0;
  const readAhead = (index: number) => {
    while (nextRead < Math.min(batch.length, index + BASE_READ_AHEAD + 1)) {
      const n = batch[nextRead]!;
      baseReads[nextRead++] = readBase(n.bases, read);
    }
  };
  const baseAt = (index: number): Promise<Buffer | string> => {
    readAhead(index);
    const p = baseReads[index]!;
    baseReads[index] = undefined;
    return p;
  };
  readAhead(0);
  const res = await deps.upstream.delta(
    batch.map((n) => ({ bases: n.bases, offset: n.offset, target: n.id })),
    batch.map((n) => n.length),
    signal,
    true,
    true,
    true,
  );
  let index = 0;
  const decoder = new DeltaDecoder(
    batch.map((n) => n.id),
    maxChunk,
    `chunk delta response from ${origin}`,
  );
  const verified: ChunkInput[] = [];
  let verifiedBytes = 0;
  let rebuilt = 0;
  let zstd = 0;
  let whole = 0;
  let stored = 0;
  const keep: Array<{ target: string; bases: string[]; frame: Buffer }> = [];
  const refuse = (id: string, why: string) => {
    result.refused++;
    deps.log.warn(
      { chunk: id, upstream: origin, reason: why },
      'chunk delta refused; the chunk is fetched whole',
    );
  };
  let streamError: unknown;
  try {
    for await (const piece of res.body) {
      const buf = piece as Buffer;
      deps.counter.add(buf.length);
      if (deps.bandwidth) await deps.bandwidth.take(buf.length);
      for (const rec of decoder.push(buf)) {
        const at = index++;
        const need = batch[at]!; // the decoder holds records to the request's order
        const base = baseAt(at);
        if (rec.kind === 'absent') continue; // the whole-chunk download asks again and reports it
        let data: Uint8Array;
        if (rec.kind === 'whole') data = rec.data;
        else if (rec.kind === 'stored') {
          // The signed length caps the output: a bomb stops there, a damaged or cut frame is refused.
          try {
            data = plainBytes('zstd', rec.frame, need.length, `chunk ${rec.target}`);
          } catch (e) {
            refuse(rec.target, `its zstd frame does not decode (${(e as Error).message})`);
            continue;
          }
        } else {
          // Kind 5 names its own bases; one this depot does not hold refuses the record.
          const b = rec.kind === 'chosen' ? await readBase(rec.bases, read) : await base;
          if (typeof b === 'string') {
            refuse(rec.target, b);
            continue;
          }
          const out = rebuildFromRecord(b, rec, need.length);
          if (typeof out === 'string') {
            refuse(rec.target, out);
            continue;
          }
          data = out;
        }
        // Threat: a lying upstream or a damaged path. The same check as every downloaded chunk.
        // A stored frame is kept as it came once its plain bytes hash to the id.
        const chunk =
          rec.kind === 'stored' ? storedChunk(rec.target, data, rec.frame) : verifiedChunk(rec.target, data);
        if (!chunk) {
          const what =
            rec.kind === 'whole' ? 'bytes' : rec.kind === 'stored' ? 'decoded bytes' : 'rebuilt bytes';
          refuse(rec.target, `its ${what} do not hash to its id`);
          continue;
        }
        verified.push(chunk);
        verifiedBytes += data.length;
        if (rec.kind === 'whole' || rec.kind === 'stored') whole++;
        else rebuilt++;
        if (rec.kind === 'stored') stored++;
        if (rec.kind === 'zstd' || rec.kind === 'chosen') {
          zstd++;
          keep.push({
            target: rec.target,
            bases: need.bases,
            frame: rec.kind === 'chosen' ? chosenEntry(rec.bases, rec.frame) : rec.frame,
          });
        }
        deps.log.debug(
          { chunk: rec.target, bases: need.bases, kind: rec.kind, bytes: data.length },
          'chunk from delta',
        );
      }
    }
    decoder.finish();
  } catch (e) {
    streamError = e;
  }
  // Keep what arrived intact, even when the stream failed part way.
  if (verified.length) {
    let r;
    try {
      r = await deps.store.putMany(verified);
    } catch (e) {
      throw new StoreFailure(e);
    }
    result.chunks += r.written;
    result.bytes += verifiedBytes;
    result.rebuilt += rebuilt;
    result.zstd = (result.zstd ?? 0) + zstd;
    result.whole += whole;
    result.stored = (result.stored ?? 0) + stored;
    deps.onStored?.(r.written, verifiedBytes);
    // Only deltas whose chunk verified and was stored are kept for children and agents.
    for (const k of keep) await deps.deltaCache?.put(k.target, k.bases, k.frame);
  }
  if (streamError) throw deps.upstream.explain(streamError);
}

/** The chunk of plain bytes `data` with its zstd `frame`, if they hash to `id`. */
function storedChunk(id: string, data: Uint8Array, frame: Buffer): ChunkInput | undefined {
  const chunk = hashedChunk(data, frame);
  return digestEquals(chunk.id, id) ? chunk : undefined;
}

/**
 * The concatenated base chunks from this depot's store (unverified: the rebuilt chunk is hashed), or why not.
 */
export async function readBase(
  ids: readonly string[],
  read: (id: string) => Promise<Uint8Array>,
): Promise<Buffer | string> {
  const parts: Uint8Array[] = [];
  for (const id of ids) {
    try {
      parts.push(await read(id));
    } catch (e) {
      return `base chunk ${id} could not be read from this depot's store (${(e as Error).message})`;
    }
  }
  return parts.length === 1
    ? Buffer.from(parts[0]!.buffer, parts[0]!.byteOffset, parts[0]!.byteLength)
    : Buffer.concat(parts);
}
