/**
 * The content-addressed chunk store: write-once chunks keyed by their BLAKE3 id.
 *
 * Layout `DIR/chunks-v1/` (the on-disk format version is in the folder name):
 *   index.sqlite          SQLite (WAL, synchronous=FULL on every open): chunk id → pack, offset, length
 *   packs/pack-NNNNNNNN.dat   append-only pack files of self-describing records (pack-format.ts), ≤ 1 GiB
 *   quarantine/           bytes of chunks that a scrub found bad, kept for inspection
 *
 * Why packs and not one file per chunk (`ab/cd/<id>`, tmp + fsync + rename), as measured by
 * `bench/store.ts` (figures in bench/README.md, row `store`):
 *   - durable writes: a file per chunk pays an fsync per chunk plus one per touched shard folder
 *     (~1.9 ms each here) even when batched; a pack batch pays one fdatasync plus one WAL commit;
 *     18× the chunks/s at 5× the chunk count, and the gap widens with the count;
 *   - disk use: a small file costs a whole 4 KiB block, an inode and its share of 65,536 folders;
 *     a pack record costs 40 bytes of header plus ~58 bytes of index row;
 *   - existence checks: `missing()` runs one read transaction per call over a WITHOUT ROWID
 *     B-tree (~1 µs per id inside a transaction, ~5 µs outside, hence one per call), against a
 *     stat() per id through a folder tree whose dentries stop fitting in cache at 10 million files.
 *     An in-memory set was not needed: 10 million ids would cost ~1 GB of JS strings for a gain
 *     that SQLite already gives at ~300k ids/s;
 *   - 10 million chunks are ~600 pack files and one index, not 10 million inodes to back up, copy,
 *     scan or fsck.
 * The cost is compaction: deleting a chunk only drops its index row, and `gc()` rewrites packs whose
 * dead fraction passes `compactDeadFraction` (copy live records to a new pack, commit, delete).
 *
 * Durability and crash safety: a batch is appended at the pack's committed size, fdatasynced, and only
 * then are its index rows and the pack's new committed size written in one transaction. A crash
 * before the commit leaves unindexed bytes after the committed size, which are ignored, dropped by
 * `open()` and overwritten by the next batch: those chunks are simply missing and get fetched again.
 * Nothing of a batch is visible before its commit, and a batch with a bad chunk writes nothing.
 *
 * Concurrency: one writer at a time (write-lock.ts): an in-process queue plus SQLite's write lock
 * (BEGIN IMMEDIATE, held across the append and its fsync) against other processes. Presence is
 * re-checked under the lock, so concurrent puts of one id store it once. Reads never take the lock.
 *
 * `open()` is synchronous (SQLite and a stat per pack); every call that touches pack bytes is async.
 * Modules: this one opens and checks the store; store-writer.ts writes, store-reader.ts reads,
 * compaction.ts sweeps unreferenced chunks and compacts packs.
 */
import { mkdirSync, readdirSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { DepotsyncError, fromSystemError } from '../errors.js';
import type { Logger } from '../log.js';
import { assertChunkId, idToKey, type ChunkInput } from './chunk-id.js';
import { ChunkIndex, deadBytes, rowEncoding, rowPlainLength } from './chunk-index.js';
import { sweepAndCompact, type CompactionParts, type GcOptions, type GcResult } from './compaction.js';
import { resolveStoreOptions, type ChunkStoreOptions } from './options.js';
import { PackFiles } from './pack-files.js';
import { PACK_HEADER_BYTES, packIdFromName, RECORD_HEADER_BYTES } from './pack-format.js';
import { StoreReader, type ReadManyOptions, type ReadManyRecord, type StoredChunk } from './store-reader.js';
import { hashedChunk } from './chunk-id.js';
import { plainBytes, type ChunkEncoding } from './encoding.js';
import { StoreWriter, type PutResult, type PutStreamOptions } from './store-writer.js';
import { WriteLock } from './write-lock.js';

export { hashedChunk, type ChunkInput } from './chunk-id.js';
export type { GcOptions, GcResult } from './compaction.js';
export type { ChunkStoreOptions } from './options.js';
export {
  READ_STREAM_HIGH_WATER_MARK,
  type ReadManyOptions,
  type ReadManyRecord,
  type StoredChunk,
} from './store-reader.js';
export type { ChunkEncoding } from './encoding.js';
export type { PutResult, PutStreamOptions } from './store-writer.js';

export const STORE_FORMAT_DIR = 'chunks-v1';

export interface StoreStats {
  chunks: number;
  /** Chunk bytes held as stored (compressed where that paid; without pack overhead). */
  bytes: number;
  packs: number;
  /** Committed bytes of all pack files, dead records included. */
  packBytes: number;
  /** Bytes of records no index row points at (reclaimed by gc compaction). */
  deadBytes: number;
}

/**
 * The store: opens the index and the pack files, checks them against each other, and hands each call
 * to its side: writing (store-writer.ts), reading (store-reader.ts), sweeping and compaction
 * (compaction.ts); removal and statistics are here.
 */
export class ChunkStore {
  /** `DIR/chunks-v1`. */
  readonly root: string;
  private readonly opts: ChunkStoreOptions;
  private readonly log: Logger;
  private readonly index: ChunkIndex;
  private readonly packs: PackFiles;
  private readonly lock: WriteLock;
  private readonly quarantineDir: string;
  private readonly reader: StoreReader;
  private readonly writer: StoreWriter;
  private closed = false;

  /** The zstd level chunks put plain are compressed at (0: kept plain). */
  get compressLevel(): number {
    return this.opts.compressLevel;
  }

  /** Open (creating if needed) the store in `dir`/chunks-v1. Synchronous. */
  static open(dir: string, options: Partial<ChunkStoreOptions> = {}): ChunkStore {
    return new ChunkStore(dir, resolveStoreOptions(options));
  }

  private constructor(dir: string, opts: ChunkStoreOptions) {
    this.opts = opts;
    this.root = join(dir, STORE_FORMAT_DIR);
    this.log = opts.logger.child({ component: 'store' });
    const packDir = join(this.root, 'packs');
    this.quarantineDir = join(this.root, 'quarantine');
    try {
      mkdirSync(packDir, { recursive: true });
    } catch (e) {
      throw fromSystemError(e, `chunk store ${this.root}`);
    }
    this.index = new ChunkIndex(join(this.root, 'index.sqlite'), { durable: this.opts.durable });
    this.packs = new PackFiles(packDir, opts.maxOpenPacks);
    this.lock = new WriteLock(this.index.db, opts.lockTimeoutMs, `chunk store ${this.root}`);
    const assertOpen = () => this.assertOpen();
    const { index, packs, lock, log } = this;
    this.reader = new StoreReader({ index, packs, verifyOnRead: opts.verifyOnRead, assertOpen });
    this.writer = new StoreWriter({ index, packs, lock, log, opts, assertOpen });
    this.checkPacks();
  }

  /**
   * Compare each pack file with its committed size. A longer file has the uncommitted tail of a batch
   * interrupted before its commit: drop it (only when no other process is writing right now; else the
   * next append overwrites it). A shorter or missing file lost committed chunks: say so loudly; reads
   * of those chunks fail as 'truncated' and a scrub quarantines them.
   */
  private checkPacks(): void {
    const rows = this.index.packs();
    const known = new Set(rows.map((r) => r.id));
    this.lock.tryNow(() => {
      for (const p of rows) {
        const path = this.packs.path(p.id);
        let size: number;
        try {
          size = statSync(path).size;
        } catch {
          this.log.error(
            { pack: path, chunks: p.chunks },
            'pack file is missing: its chunks cannot be read; run a scrub and sync again',
          );
          continue;
        }
        if (size < p.size) {
          this.log.error(
            { pack: path, committedBytes: p.size, fileBytes: size },
            'pack file is shorter than committed: chunks at its end are lost; run a scrub and sync again',
          );
        } else if (size > p.size) {
          truncateSync(path, p.size);
          this.log.warn(
            { pack: path, droppedBytes: size - p.size },
            'dropped the uncommitted tail of an interrupted batch',
          );
        }
      }
      // Files with no pack row: a new pack whose first batch never committed, or a compacted pack
      // whose deletion was interrupted. Safe to delete only while holding the write lock.
      for (const name of readdirSync(this.packs.dir)) {
        const id = packIdFromName(name);
        if (id !== undefined && known.has(id)) continue;
        unlinkSync(join(this.packs.dir, name));
        this.log.warn({ file: name }, 'removed a pack file that no committed index row refers to');
      }
    });
  }

  // ---- writing (store-writer.ts) ----------------------------------------------------------------

  /**
   * Store chunks durably. Each chunk's bytes are hashed and checked against its id before anything
   * is written (a mismatch stores nothing of the batch); ids already present are skipped; one
   * fdatasync of the pack and one index commit per call (calls made meanwhile are committed together).
   */
  putMany(chunks: readonly ChunkInput[]): Promise<PutResult> {
    return this.writer.putMany(chunks);
  }

  put(id: string, data: Uint8Array): Promise<PutResult> {
    return this.writer.putMany([{ id, data }]);
  }

  /**
   * Store chunks received in their stored form (a zstd frame from an upstream or a bundle), as they
   * came: each is decoded with its declared plain length as a hard cap and its plain bytes are checked
   * against its id before anything of the batch is written (else 'too-large', 'corrupt', 'truncated'
   * or 'hash-mismatch', and nothing is stored).
   */
  async putStored(records: ReadonlyArray<{ id: string } & StoredChunk>): Promise<PutResult> {
    const checked = records.map((r) => {
      assertChunkId(r.id, 'putStored: id');
      const plain = plainBytes(r.encoding, r.data, r.plainLength, `chunk ${r.id}`);
      const c = hashedChunk(plain, r.encoding === 'zstd' ? r.data : null);
      if (c.id !== r.id)
        throw new DepotsyncError('hash-mismatch', `chunk ${r.id}: its plain bytes hash to ${c.id}`, {
          hint: 'the sender delivered damaged or forged data; nothing of this batch was stored; fetch it again',
        });
      return c;
    });
    return this.writer.putMany(checked);
  }

  /**
   * Store a long stream of chunk groups (an ingest) with a durable commit every `checkpointBytes`
   * instead of one per group. Chunks must be checked already (`hashedChunk`/`workerHashedChunk`).
   */
  putStream(groups: AsyncIterable<readonly ChunkInput[]>, opts: PutStreamOptions = {}): Promise<PutResult> {
    return this.writer.putStream(groups, opts);
  }

  // ---- reading (store-reader.ts) ----------------------------------------------------------------

  has(id: string): boolean {
    return this.reader.has(id);
  }

  /**
   * The ids of `ids` that are not stored, in first-seen order without repeats
   * (one read transaction per call).
   */
  missing(ids: readonly string[]): string[] {
    return this.reader.missing(ids);
  }

  size(id: string): number | undefined {
    return this.reader.size(id);
  }

  /** The chunk's bytes, re-hashed unless `verify` is false (default: the store's `verifyOnRead`). */
  get(id: string, opts: { verify?: boolean } = {}): Promise<Buffer> {
    return this.reader.get(id, opts);
  }

  /**
   * How each chunk is held (encoding, stored and plain length), from the index alone; undefined where
   * absent. For planning what reads of the stored form will return (a bundle's table of contents).
   */
  storedForms(
    ids: readonly string[],
  ): Array<{ encoding: ChunkEncoding; length: number; plainLength: number } | undefined> {
    this.assertOpen();
    ids.forEach((id) => assertChunkId(id));
    return this.index
      .lookupMany(ids.map(idToKey))
      .map((row) =>
        row
          ? { encoding: rowEncoding(row), length: row.length, plainLength: rowPlainLength(row) }
          : undefined,
      );
  }

  /** The chunk as stored (see StoreReader.getStored), re-hashed through its plain bytes unless `verify` is false. */
  async getStored(id: string, opts: { verify?: boolean } = {}): Promise<StoredChunk> {
    const { data, encoding, plainLength } = await this.reader.getStored(id, opts);
    return { data, encoding, plainLength };
  }

  /** Many chunks in the order asked, for serving batches; a chunk it cannot serve comes with its problem. */
  readMany(ids: readonly string[], opts: ReadManyOptions = {}): AsyncGenerator<ReadManyRecord> {
    return this.reader.readMany(ids, opts);
  }

  /** Bytes `start`..`end` (inclusive) of a chunk, unverified. */
  readRange(id: string, start: number, end: number): Promise<Buffer> {
    return this.reader.readRange(id, start, end);
  }

  /** A stream of the chunk (or of `range`, inclusive ends) in 1 MiB pieces, unverified. */
  createReadStream(id: string, range?: { start: number; end: number }): Readable {
    return this.reader.createReadStream(id, range);
  }

  // ---- removing ------------------------------------------------------------------------------

  /** Drop index rows (the bytes are reclaimed by the next gc compaction). Unknown ids are ignored. */
  async delete(ids: readonly string[]): Promise<{ removed: number; bytes: number }> {
    this.assertOpen();
    ids.forEach((id) => assertChunkId(id));
    return this.lock.transaction(async () => this.index.deleteRows(ids.map(idToKey)));
  }

  /**
   * Take a bad chunk out of service: copy whatever bytes it has to `quarantine/<id>.<ms>.bin` for
   * inspection and drop it from the index, so the next sync fetches a good copy. Returns false if
   * the chunk was not stored.
   */
  async quarantine(id: string): Promise<boolean> {
    this.assertOpen();
    assertChunkId(id);
    const key = idToKey(id);
    return this.lock.transaction(async () => {
      const row = this.index.lookup(key);
      if (!row) return false;
      try {
        const bytes = await this.packs.read(row.pack, row.offset + RECORD_HEADER_BYTES, row.length);
        await mkdir(this.quarantineDir, { recursive: true });
        await writeFile(join(this.quarantineDir, `${id}.${this.opts.now()}.bin`), bytes);
      } catch (e) {
        this.log.warn(
          { chunk: id, err: (e as Error).message },
          'could not keep a copy of the quarantined chunk',
        );
      }
      this.index.deleteRows([key]);
      this.log.warn({ chunk: id }, 'chunk quarantined');
      return true;
    });
  }

  /**
   * Remove every chunk for which `isLive(id)` is false and that is older than the grace period, then
   * compact packs that became mostly dead. Logged as named, timed steps (compaction.ts).
   */
  async gc(isLive: (id: string) => boolean, options: GcOptions = {}): Promise<GcResult> {
    this.assertOpen();
    const { index, packs, lock, log, opts, quarantineDir, writer } = this;
    const append: CompactionParts['append'] = (records, avoidPack) =>
      writer.appendRecords(records, avoidPack);
    return sweepAndCompact({ index, packs, lock, log, opts, quarantineDir, append }, isLive, options);
  }

  // ---- the rest ------------------------------------------------------------------------------

  /** Plain bytes of every stored chunk (one scan of the index: for status and reports). */
  plainBytes(): number {
    this.assertOpen();
    return this.index.plainBytes();
  }

  stats(): StoreStats {
    this.assertOpen();
    const s: StoreStats = { chunks: 0, bytes: 0, packs: 0, packBytes: 0, deadBytes: 0 };
    for (const p of this.index.packs()) {
      s.chunks += p.chunks;
      s.bytes += p.live_bytes;
      s.packs++;
      s.packBytes += p.size;
      s.deadBytes += deadBytes(p, PACK_HEADER_BYTES);
    }
    return s;
  }

  /** Wait for writes in flight, then close the index and the pack files. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.lock.exclusive(async () => {
      this.closed = true;
    });
    await this.packs.closeAll();
    this.index.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new DepotsyncError('internal', `chunk store ${this.root} is closed`);
  }
}
