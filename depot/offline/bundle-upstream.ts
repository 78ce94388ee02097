import { inflateRawSync } from 'node:zlib';
import { DepotsyncError, isDepotsyncError } from '../../src/errors.js';
import { checkMetadataFileName, type MetadataSource } from '../../src/tuf/client.js';
import type { ChunkInput } from '../../src/store/chunk-id.js';
import type { BundlePair } from '../../src/content/delta-pairs.js';
import { rebuildFromRecord } from '../../src/deltas/rebuild.js';
import { DELTA_SECTION, DeltaDecoder, decodeDeltaSection } from '../../src/wire/chunk-delta.js';
import { readBase, type ChunkDeltaDeps, type DeltaFetchResult, type DeltaNeed } from '../sync/chunk-delta.js';
import { receivedChunk, verifiedChunk } from '../../src/read/verify.js';
import { openChunkStream, type ChunkNeed, type ChunkSinkDeps } from '../sync/chunks.js';
import type { ByteCounter, Upstream } from '../sync/upstream.js';
import type { BundleFile } from './bundle-file.js';

/**
 * Verified chunk bytes gathered before one durable store call (one pack fsync and one index commit). Two
 * arenas of this size are resident for the whole import: 8 MiB keeps a 4 GiB import under 250 MiB RSS
 * at a few more fsyncs, which the import time does not show (bench/README.md, `offline-bundle`).
 */
export const STORE_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * An offline bundle as the sync engine's upstream: the same engine, the same TUF client, the same
 * manifest and chunk checks as an online sync, reading from the file instead of the network. What the
 * bundle lacks is 'not-found' with a message naming the `--from` to export, since that is the only way
 * a genuine bundle lacks something: it was made for a depot at another generation.
 */
export class BundleUpstream implements Upstream {
  readonly origin: string;

  constructor(
    private readonly file: BundleFile,
    /** The generation this depot serves (for messages). */
    private readonly servedGeneration: number,
    private readonly storeBatchBytes: number = STORE_BATCH_BYTES,
    /**
     * The pairs of the bundle's chunk-deltas section as this depot computes them
     * (chunk-delta.ts bundlePairsFor).
     */
    private readonly deltaPairs?: () => BundlePair[],
  ) {
    this.origin = `bundle ${file.path}`;
  }

  private missing(what: string): DepotsyncError {
    const from = this.file.header.signed.fromGeneration;
    return new DepotsyncError(
      'not-found',
      `${this.origin} does not carry ${what}, which this depot lacks (the bundle starts at generation ${from}, this depot serves ${this.servedGeneration || 'nothing yet'})`,
      {
        hint: `export a bundle for this depot with --from ${this.servedGeneration}`,
      },
    );
  }

  metadataSource(counter: ByteCounter): MetadataSource {
    return {
      fetch: async (name: string, maxBytes: number): Promise<Uint8Array> => {
        checkMetadataFileName(name);
        const s = this.file.section('metadata', name);
        // 'not-found' ends the TUF client's root walk, as a 404 does online.
        if (!s) throw new DepotsyncError('not-found', `metadata ${name}: not in ${this.origin}`);
        if (s.length > maxBytes)
          throw new DepotsyncError(
            'too-large',
            `metadata ${name} in ${this.origin}: ${s.length} bytes exceeds the limit of ${maxBytes}`,
          );
        const bytes = await this.file.readSection(s);
        counter.add(bytes.length);
        return bytes;
      },
    };
  }

  async revocationList(maxBytes: number): Promise<Buffer | undefined> {
    const s = this.file.section('revocations', 'revocations.json');
    if (!s) return undefined;
    if (s.length > maxBytes)
      throw new DepotsyncError(
        'too-large',
        `revocation list in ${this.origin}: ${s.length} bytes exceeds the limit of ${maxBytes}`,
      );
    return this.file.readSection(s);
  }

  async target(name: string, maxBytes: number, what: string): Promise<Buffer> {
    const s = this.file.section('manifest', name);
    if (!s) throw this.missing(what);
    // Endless data: the signed catalog's length caps what is read (the engine compares it exactly).
    if (s.length > maxBytes)
      throw new DepotsyncError(
        'hash-mismatch',
        `${what} in ${this.origin}: ${s.length} bytes, the signed catalog says ${maxBytes}`,
      );
    const stored = await this.file.readSection(s);
    if (s.encoding !== 'deflate') return stored;
    // Decompression bomb: inflate no further than the signed length; the engine
    // then checks it and the SHA-256.
    try {
      return inflateRawSync(stored, { maxOutputLength: Math.max(1, maxBytes) });
    } catch (e) {
      throw new DepotsyncError(
        'hash-mismatch',
        `${what} in ${this.origin}: its compressed bytes do not inflate to at most the ${maxBytes} bytes the signed catalog says (${(e as Error).message})`,
        {
          hint: 'the file was damaged or altered after export; export and copy it again',
        },
      );
    }
  }

  /**
   * The chunk-deltas section (src/wire/chunk-delta.ts): each record rebuilt against the base chunks this
   * depot holds and hashed against its id before it is stored, exactly like a delta received online.
   * A record that does not rebuild or verify is refused: its chunk stays missing, and the import then
   * fails naming it (the chunk sections do not carry it). `needs` are the engine's pairs; the section's
   * own pair list is computed again from the manifests.
   */
  async fetchChunkDeltas(needs: readonly DeltaNeed[], deps: ChunkSinkDeps): Promise<DeltaFetchResult> {
    const result: DeltaFetchResult = {
      chunks: 0,
      bytes: 0,
      rebuilt: 0,
      whole: 0,
      refused: 0,
      unsupported: false,
    };
    const s = this.file.section('chunk-deltas', DELTA_SECTION);
    const read = deps.store.get?.bind(deps.store);
    if (!s || !this.deltaPairs || !read || needs.length === 0) return result;
    const what = `${this.origin} section ${DELTA_SECTION}`;
    const pairs = this.deltaPairs();
    const bytes = await this.file.readSection(s);
    deps.counter.add(bytes.length);
    const { included, records } = decodeDeltaSection(bytes, pairs.length, what);
    const carried = included.map((i) => pairs[i]!);
    const missing = new Set(deps.store.missing(carried.map((p) => p.target)));
    const decoder = new DeltaDecoder(
      carried.map((p) => p.target),
      carried.reduce((m, p) => Math.max(m, p.length), 0),
      what,
    );
    const stream = openChunkStream(deps, result);
    const refuse = (id: string, why: string) => {
      result.refused++;
      deps.log.warn({ chunk: id, bundle: this.file.path, reason: why }, 'chunk delta in the bundle refused');
    };
    let batch: ChunkInput[] = [];
    let failure: unknown;
    // Verified zstd deltas, kept to serve children and agents that hold the same old version.
    const keep: Array<{ target: string; bases: string[]; frame: Buffer }> = [];
    try {
      const recs = decoder.push(records);
      decoder.finish();
      for (const [j, rec] of recs.entries()) {
        const p = carried[j]!;
        if (!missing.has(p.target) || rec.kind === 'absent') continue;
        let data: Uint8Array;
        if (rec.kind === 'whole') data = rec.data;
        else if (rec.kind === 'stored') {
          // Exports put whole chunks in chunk sections; a frame here is not what the bundle's format allows.
          refuse(p.target, 'a whole chunk as a zstd frame in a delta section');
          continue;
        } else if (rec.kind === 'chosen') {
          // Bundle sections pair from the manifests alone; chosen bases are an online answer.
          refuse(p.target, 'a delta against chosen bases in a delta section');
          continue;
        } else {
          const base = await readBase(p.bases, read);
          const out = typeof base === 'string' ? base : rebuildFromRecord(base, rec, p.length);
          if (typeof out === 'string') {
            refuse(p.target, out);
            continue;
          }
          data = out;
        }
        const chunk = verifiedChunk(p.target, data);
        if (!chunk) {
          refuse(p.target, 'its rebuilt bytes do not hash to its id');
          continue;
        }
        if (rec.kind === 'whole') result.whole++;
        else result.rebuilt++;
        if (rec.kind === 'zstd') {
          result.zstd = (result.zstd ?? 0) + 1;
          keep.push({ target: p.target, bases: p.bases, frame: rec.frame });
        }
        batch.push(chunk);
        if (batch.length >= 256) {
          await stream.add(batch);
          batch = [];
        }
      }
      if (batch.length) await stream.add(batch);
    } catch (e) {
      failure = e;
    }
    const ended = await stream.end().then(
      () => undefined,
      (e: unknown) => e,
    );
    failure ??= ended;
    if (failure !== undefined) throw failure;
    const cache = (deps as ChunkDeltaDeps).deltaCache;
    for (const k of keep) await cache?.put(k.target, k.bases, k.frame);
    return result;
  }

  /**
   * Stream the chunk sections front to back; read and hash only the chunks still needed (a re-run
   * after an interruption skips what is stored), store verified ones in batches, stop at the first
   * chunk whose bytes do not hash to its id (what was stored before it stays: it was verified).
   */
  async fetchChunks(
    needs: readonly ChunkNeed[],
    deps: ChunkSinkDeps,
  ): Promise<{ chunks: number; bytes: number }> {
    const wanted = new Set(needs.map((n) => n.id));
    const lengthOf = new Map(needs.map((n) => [n.id, n.length]));
    const total = { chunks: 0, bytes: 0 };
    // The same checkpointed stream as an online sync: the disk writes while the file is read.
    const stream = openChunkStream(deps, total);
    // Two arenas, reused: one being filled (chunks copied out of the read buffer), one being written.
    const arenas = [Buffer.allocUnsafe(this.storeBatchBytes), Buffer.allocUnsafe(this.storeBatchBytes)];
    let arena = 0;
    let batch: ChunkInput[] = [];
    let batchBytes = 0;
    let storing: Promise<void> = Promise.resolve();
    const flush = () => {
      if (!batch.length) return;
      const chunks = batch;
      batch = [];
      batchBytes = 0;
      arena ^= 1;
      // One group in flight while the next is read and hashed; its arena is free once it is written.
      storing = storing.then(() => stream.add(chunks));
    };
    let failure: unknown;
    try {
      for (const s of this.file.sections('chunks')) {
        for await (const rec of this.file.chunkRecords(s, (id) => wanted.has(id))) {
          if (!rec.data) continue;
          deps.counter.add(rec.recordBytes);
          if (batchBytes + rec.data.length > this.storeBatchBytes) {
            await storing; // the other arena is free again once its batch is stored
            flush();
          }
          // Copy first, then hash the copy: the bytes verified are exactly the bytes stored.
          const target =
            rec.data.length > this.storeBatchBytes
              ? Buffer.allocUnsafe(rec.data.length)
              : arenas[arena]!.subarray(batchBytes, batchBytes + rec.data.length);
          rec.data.copy(target);
          // A compressed record is decoded (capped at the manifest's length) from the copy and its plain
          // bytes hashed; it is stored as it came. Damage or tampering fails here with a typed error.
          const need = { id: rec.id, length: lengthOf.get(rec.id)! };
          let chunk: ChunkInput | undefined;
          try {
            chunk = receivedChunk(
              need,
              rec.encoding,
              target,
              rec.plainLength,
              `${this.origin} (section ${s.name})`,
              s.records === 2,
            );
          } catch (e) {
            throw new DepotsyncError(
              isDepotsyncError(e) ? e.code : 'corrupt',
              `chunk ${rec.id} in ${this.origin} (section ${s.name}): its compressed record does not decode: ${(e as Error).message}; not stored`,
              {
                hint: 'the file was damaged or altered after export; export and copy it again (chunks stored so far are kept)',
                cause: e,
              },
            );
          }
          if (!chunk) {
            throw new DepotsyncError(
              'hash-mismatch',
              `chunk ${rec.id} in ${this.origin} (section ${s.name}): its bytes do not hash to its id; not stored`,
              {
                hint: 'the file was damaged or altered after export; export and copy it again (chunks stored so far are kept)',
              },
            );
          }
          wanted.delete(rec.id);
          batch.push(chunk);
          batchBytes += rec.data.length;
        }
      }
    } catch (e) {
      failure = e;
    }
    // Keep what was verified (committed), also when the file turned out damaged further on.
    flush();
    const written = await storing.then(
      () => undefined,
      (e: unknown) => e,
    );
    const ended = await stream.end().then(
      () => undefined,
      (e: unknown) => e,
    );
    failure ??= written ?? ended;
    if (failure !== undefined) throw failure;
    if (wanted.size > 0) throw this.missing(`${wanted.size} chunk(s) of the new generation`);
    return total;
  }
}
