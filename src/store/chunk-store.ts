/**
 * The content-addressed chunk store (DESIGN.md §3): write-once chunks keyed by their BLAKE3 id.
 *
 * Layout `DIR/chunks-v1/` (the on-disk format version is in the folder name):
 *   index.sqlite          SQLite (WAL, synchronous=FULL on every open): chunk id → pack, offset, length
 *   packs/pack-NNNNNNNN.dat   append-only pack files of self-describing records (pack-format.ts), ≤ 1 GiB
 *   quarantine/           bytes of chunks that a scrub found bad, kept for inspection
 *
 * Why packs and not one file per chunk (`ab/cd/<id>`, tmp + fsync + rename): measured with
 * `node dist/bench/store.js` on this machine (2 cores shared with other jobs, ext4 on virtio), 4 KiB
 * chunks, durable batches of 4096, warm page cache for the reads:
 *
 *   | layout                                   | chunks    | write chunks/s | exists/s present | exists/s absent | random reads/s | disk bytes/chunk |
 *   |------------------------------------------|----------:|---------------:|-----------------:|----------------:|---------------:|-----------------:|
 *   | file per chunk, batched fsync+rename+dir |   200,000 |            936 |           71,007 |          32,177 |          2,447 |            5,383 |
 *   | packs + SQLite index (this module)       | 1,000,000 |         16,823 |          359,252 |         219,884 |          7,741 |            4,194 |
 *
 *   (file per chunk measured at 200k: one fsync per chunk makes 1M take ~18 minutes here.)
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
 */
import { mkdirSync, readdirSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DepotsyncError, fromSystemError } from '../errors.js';
import { fsyncDir } from '../fs/atomic-write.js';
import type { Logger } from '../log.js';
import { assertChunkId, idToKey, isSelfHashed, matchesKey, type ChunkInput } from './chunk-id.js';
import { ChunkIndex, deadBytes, type ChunkRow, type NewRow } from './chunk-index.js';
import { runGc, type GcOptions, type GcResult } from './gc.js';
import { resolveStoreOptions, type ChunkStoreOptions } from './options.js';
import type { SizedBufferPool } from './buffer-pool.js';
import { appendDurably, PackAppender, PackFiles } from './pack-files.js';
import { checkRecordHeader, decodeRecord, truncated, MAX_CHUNK_BYTES, PACK_HEADER_BYTES, PACK_MAGIC, packIdFromName, RECORD_HEADER_BYTES, encodeRecordHeader } from './pack-format.js';
import { WriteLock } from './write-lock.js';

export { hashedChunk, type ChunkInput } from './chunk-id.js';
export type { GcOptions, GcResult } from './gc.js';
export type { ChunkStoreOptions } from './options.js';

export const STORE_FORMAT_DIR = 'chunks-v1';
/** highWaterMark of `createReadStream`: serving chunks over HTTP reads in 1 MiB pieces. */
export const READ_STREAM_HIGH_WATER_MARK = 1024 * 1024;

export interface PutStreamOptions {
  /** Bytes appended between two durable commits (default 256 MiB): the most a crash can make re-done. */
  checkpointBytes?: number;
  /** Writeback of the pack is started (not waited for) after this many bytes (default 32 MiB). */
  writebackBytes?: number;
  onWritten?: (group: number) => void;
  onDurable?: (bytesWritten: number) => void;
}

export interface ReadManyOptions {
  /** Re-hash each chunk, or those for which it returns true (default: the store's `verifyOnRead`). */
  verify?: boolean | ((id: string) => boolean);
  /** Largest single read of back-to-back records (default 1 MiB). */
  runBytes?: number;
  /** Reads in flight ahead of the record being yielded (default 4). */
  aheadRuns?: number;
  /**
   * Read runs into recycled buffers. The last record of each pooled run carries `release`: call it
   * once nothing uses the data of that record or of the records before it (for a socket: when the
   * write of that record has completed). Not calling it is safe (the memory is collected).
   */
  pool?: SizedBufferPool;
}

export interface ReadManyRecord {
  id: string;
  data: Buffer | undefined;
  /** Why `data` is missing: 'not-found', 'corrupt', 'truncated' or 'io'. */
  problem?: DepotsyncError;
  /** With `pool`: on the last record of a run, gives the run's buffer back (see ReadManyOptions). */
  release?: () => void;
}

interface ReadRun {
  pack: number;
  start: number;
  end: number;
  items: Array<{ id: string; key: Buffer; row?: ChunkRow }>;
}

function corrupt(id: string): DepotsyncError {
  return new DepotsyncError('corrupt', `chunk ${id}: stored bytes do not match its hash`, {
    hint: 'the disk damaged this chunk; quarantine it (or run a scrub) and sync it again',
  });
}

export interface PutResult {
  /** Chunks newly stored by this call (ids already present count as success, not as written). */
  written: number;
  bytesWritten: number;
}

export interface StoreStats {
  chunks: number;
  /** Chunk bytes held (without pack overhead). */
  bytes: number;
  packs: number;
  /** Committed bytes of all pack files, dead records included. */
  packBytes: number;
  /** Bytes of records no index row points at (reclaimed by gc compaction). */
  deadBytes: number;
}

/** Where a batch of records landed; `grewBytes` is what it added to the disk (a new pack's header included). */
export interface AppendResult {
  pack: number;
  size: number;
  rows: NewRow[];
  grewBytes: number;
}

/** @internal what gc.ts needs from the store. */
export interface StoreInternals {
  readonly index: ChunkIndex;
  readonly packs: PackFiles;
  readonly lock: WriteLock;
  readonly log: Logger;
  readonly opts: ChunkStoreOptions;
  readonly quarantineDir: string;
  appendRecords(records: Array<{ key: Buffer; data: Uint8Array }>, avoidPack?: number): Promise<AppendResult>;
}

export class ChunkStore {
  /** `DIR/chunks-v1`. */
  readonly root: string;
  private readonly opts: ChunkStoreOptions;
  private readonly log: Logger;
  private readonly index: ChunkIndex;
  private readonly packs: PackFiles;
  private readonly lock: WriteLock;
  private readonly quarantineDir: string;
  private closed = false;
  /** @internal test seam: runs after a batch's pack fsync, before its index commit (crash simulation). */
  beforeIndexCommit: (() => void) | undefined;

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
          this.log.error({ pack: path, chunks: p.chunks }, 'pack file is missing: its chunks cannot be read; run a scrub and sync again');
          continue;
        }
        if (size < p.size) {
          this.log.error({ pack: path, committedBytes: p.size, fileBytes: size }, 'pack file is shorter than committed: chunks at its end are lost; run a scrub and sync again');
        } else if (size > p.size) {
          truncateSync(path, p.size);
          this.log.warn({ pack: path, droppedBytes: size - p.size }, 'dropped the uncommitted tail of an interrupted batch');
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

  // ---- writing -------------------------------------------------------------------------------

  /**
   * Store chunks durably. Each chunk's bytes are hashed and checked against its id before anything
   * is written (a mismatch stores nothing of the batch); ids already present are skipped; one
   * fdatasync of the pack and one index commit per call.
   */
  async putMany(chunks: readonly ChunkInput[]): Promise<PutResult> {
    this.assertOpen();
    if (!Array.isArray(chunks)) throw new DepotsyncError('bad-input', 'putMany: expected an array of {id, data}');
    const unique = new Map<string, ChunkInput>();
    chunks.forEach((c: ChunkInput, i) => {
      assertChunkId(c?.id, `putMany: chunks[${i}].id`);
      if (!(c.data instanceof Uint8Array)) throw new DepotsyncError('bad-input', `putMany: chunks[${i}].data (chunk ${c.id}) is not bytes`);
      if (c.data.length > MAX_CHUNK_BYTES) {
        throw new DepotsyncError('too-large', `chunk ${c.id}: ${c.data.length} bytes, above the store's limit of ${MAX_CHUNK_BYTES}`);
      }
      if (!unique.has(c.id)) unique.set(c.id, c);
    });
    // Check every chunk before any byte reaches the disk: forged or damaged data is never stored,
    // and a batch with one bad chunk leaves nothing half-visible.
    const items: Array<{ key: Buffer; data: Uint8Array }> = [];
    for (const c of unique.values()) {
      const key = idToKey(c.id);
      if (!isSelfHashed(c) && !matchesKey(key, c.data)) {
        throw new DepotsyncError('hash-mismatch', `chunk ${c.id}: its ${c.data.length} bytes do not hash to its id`, {
          hint: 'the sender delivered damaged or forged data; nothing of this batch was stored; fetch it again',
        });
      }
      items.push({ key, data: c.data });
    }
    if (items.length === 0) return { written: 0, bytesWritten: 0 };
    // Group commit: calls that arrive while another batch is being written and fdatasynced (a sync
    // fetches several batches at once) are stored together in the next transaction: one fdatasync and
    // one index commit for all of them instead of one each (a waited fdatasync costs ~30 ms here).
    return new Promise<PutResult>((resolve, reject) => {
      this.commitQueue.push({ items, resolve, reject });
      if (!this.committing) void this.commitQueued();
    });
  }

  private readonly commitQueue: Array<{ items: Array<{ key: Buffer; data: Uint8Array }>; resolve: (r: PutResult) => void; reject: (e: unknown) => void }> = [];
  private committing = false;

  private async commitQueued(): Promise<void> {
    this.committing = true;
    try {
      while (this.commitQueue.length > 0) {
        const calls = this.commitQueue.splice(0);
        let stored: { pack: number; chunks: number } | undefined;
        try {
          const results = await this.lock.transaction(async () => {
            const nowS = Math.floor(this.opts.now() / 1000);
            const perCall = calls.map(() => ({ written: 0, bytesWritten: 0 }));
            const fresh: Array<{ key: Buffer; data: Uint8Array }> = [];
            const present: Buffer[] = [];
            const seen = new Set<string>();
            calls.forEach((call, i) => {
              for (const it of call.items) {
                const hex = it.key.toString('hex');
                if (seen.has(hex) || this.index.has(it.key)) {
                  present.push(it.key);
                  continue;
                }
                seen.add(hex);
                fresh.push(it);
                perCall[i]!.written++;
                perCall[i]!.bytesWritten += it.data.length;
              }
            });
            // Re-put of a stored chunk restarts its GC grace period (a publish referencing it is in flight).
            if (present.length > 0) this.index.touch(present, nowS, nowS - 60);
            if (fresh.length === 0) return perCall;
            const { pack, size, rows } = await this.appendRecords(fresh);
            this.beforeIndexCommit?.();
            this.index.addRows(pack, size, rows, nowS);
            stored = { pack, chunks: fresh.length };
            return perCall;
          });
          // Resolved after COMMIT: "stored" means durable (a process killed after this keeps the batch).
          // Logged after COMMIT too: a process killed after this line keeps the batch (tests kill on it).
          if (stored) this.log.debug({ ...stored, calls: calls.length }, 'stored batch');
          calls.forEach((c, i) => c.resolve(results[i]!));
        } catch (e) {
          for (const c of calls) c.reject(e);
        }
      }
    } finally {
      this.committing = false;
    }
  }

  /**
   * Store a long stream of chunk groups (an ingest) with checkpoints instead of a durable commit per
   * group: records are appended as they come, with writeback of the pack started every
   * `writebackBytes` without waiting for it, and every `checkpointBytes` (and at the end) the pack is
   * fdatasynced and the rows of the checkpoint are indexed in one transaction. The same guarantee as
   * `putMany` (a chunk's row is committed only after its bytes are fdatasynced; a crash leaves at most an
   * unindexed tail, dropped at the next open), at the disk's streaming speed: one fdatasync waited for
   * per checkpoint instead of one per group (measured here: 1 GiB in 32 MiB groups, 4.0 s with a
   * waited fdatasync per group, 0.69 s this way, against 0.9-1.0 s for cp + sync).
   * Holds the write lock from start to end: other writers of this store wait. `onWritten(i)`: group i's
   * bytes are in the kernel (its buffers may be reused); `onDurable(bytes)`: a checkpoint committed.
   * Chunks must be checked already (`hashedChunk`/`workerHashedChunk`): this does not re-hash.
   */
  async putStream(groups: AsyncIterable<readonly ChunkInput[]>, opts: PutStreamOptions = {}): Promise<PutResult> {
    this.assertOpen();
    const checkpointBytes = opts.checkpointBytes ?? 256 * 1024 * 1024;
    const writebackBytes = opts.writebackBytes ?? 32 * 1024 * 1024;
    const it = groups[Symbol.asyncIterator]();
    const total: PutResult = { written: 0, bytesWritten: 0 };
    let index = 0;
    const pull = async (): Promise<readonly ChunkInput[] | undefined> => {
      const next = await it.next();
      return next.done ? undefined : next.value;
    };
    await this.lock.exclusive(async () => {
      // A checkpoint opens only when a group is waiting for it: a stream that ends right at a
      // checkpoint's end opens no further, empty one (no empty pack, no extra fdatasync).
      let group = await pull();
      while (group) {
        let full = false; // this checkpoint ended for its size (the stream may go on), not at the end
        const r = await this.lock.inTransaction(async () => {
          const nowS = Math.floor(this.opts.now() / 1000);
          const last = this.index.packs().at(-1);
          const reuse = last !== undefined && (last.size + checkpointBytes <= this.opts.maxPackBytes || last.size === PACK_HEADER_BYTES);
          const pack = reuse ? last.id : this.index.createPack(PACK_HEADER_BYTES);
          const writer = await PackAppender.open(this.packs.path(pack), !reuse, reuse ? last.size : 0, this.opts.durable ? writebackBytes : 0);
          const rows: NewRow[] = [];
          const seen = new Set<string>();
          try {
            while (group) {
              const present: Buffer[] = [];
              const buffers: Buffer[] = [];
              for (const c of group) {
                if (!isSelfHashed(c)) throw new DepotsyncError('internal', `putStream: chunk ${c.id} was not hashed by this process`);
                if (seen.has(c.id)) continue;
                seen.add(c.id);
                const key = idToKey(c.id);
                if (this.index.has(key)) {
                  present.push(key);
                  continue;
                }
                const header = encodeRecordHeader(key, c.data.length);
                rows.push({ key, offset: writer.position, length: c.data.length });
                buffers.push(header, Buffer.from(c.data.buffer, c.data.byteOffset, c.data.length));
                writer.position += header.length + c.data.length;
              }
              if (present.length > 0) this.index.touch(present, nowS, nowS - 60);
              await writer.write(buffers);
              opts.onWritten?.(index++);
              if (writer.written >= checkpointBytes) {
                full = true;
                break;
              }
              group = await pull();
            }
            // The rows go in while the checkpoint's last fdatasync runs (`finish` has issued it):
            // 14,000 rows per GiB took ~18 ms of this thread, which the disk now overlaps. Other
            // connections see them only at COMMIT, which comes only once the fdatasync succeeded
            // (else ROLLBACK); reads on this process's own connection may see them meanwhile, and
            // every byte they point at is written (in the page cache, not yet certainly on disk).
            const finishing = writer.finish(this.opts.durable);
            finishing.catch(() => undefined); // awaited just below, once the rows are in
            const added = this.index.addRows(pack, writer.position, rows, nowS);
            await finishing;
            if (!reuse && this.opts.durable) await fsyncDir(this.packs.dir).catch((e: unknown) => Promise.reject(fromSystemError(e, `fsync ${this.packs.dir}`)));
            this.beforeIndexCommit?.();
            return added;
          } finally {
            await writer.close();
          }
        });
        total.written += r.inserted;
        total.bytesWritten += r.bytes;
        // Logged after COMMIT: a process killed after this line keeps the checkpoint (tests kill on it).
        this.log.debug({ chunks: r.inserted, bytes: r.bytes }, 'stored checkpoint');
        opts.onDurable?.(total.bytesWritten);
        group = full ? await pull() : undefined;
      }
    });
    return total;
  }

  async put(id: string, data: Uint8Array): Promise<PutResult> {
    return this.putMany([{ id, data }]);
  }

  /**
   * Append records to the current pack (or a new one) and fdatasync; the caller holds the write
   * transaction and commits the returned rows. `avoidPack`: never append to it (the pack being compacted).
   */
  private async appendRecords(records: Array<{ key: Buffer; data: Uint8Array }>, avoidPack?: number): Promise<AppendResult> {
    const batchBytes = records.reduce((n, r) => n + RECORD_HEADER_BYTES + r.data.length, 0);
    const last = this.index.packs().at(-1);
    const reuse = last !== undefined && last.id !== avoidPack && (last.size + batchBytes <= this.opts.maxPackBytes || last.size === PACK_HEADER_BYTES);
    const pack = reuse ? last.id : this.index.createPack(PACK_HEADER_BYTES);
    const start = reuse ? last.size : PACK_HEADER_BYTES;
    const buffers: Buffer[] = reuse ? [] : [PACK_MAGIC];
    const rows: NewRow[] = [];
    let offset = start;
    for (const r of records) {
      buffers.push(encodeRecordHeader(r.key, r.data.length), Buffer.from(r.data.buffer, r.data.byteOffset, r.data.length));
      rows.push({ key: r.key, offset, length: r.data.length });
      offset += RECORD_HEADER_BYTES + r.data.length;
    }
    const size = await appendDurably(this.packs.path(pack), !reuse, reuse ? start : 0, buffers, this.opts.durable);
    if (!reuse && this.opts.durable) await fsyncDir(this.packs.dir).catch((e: unknown) => Promise.reject(fromSystemError(e, `fsync ${this.packs.dir}`)));
    return { pack, size, rows, grewBytes: size - (reuse ? start : 0) };
  }

  // ---- reading -------------------------------------------------------------------------------

  has(id: string): boolean {
    this.assertOpen();
    assertChunkId(id);
    return this.index.has(idToKey(id));
  }

  /** The ids of `ids` that are not stored, in first-seen order without repeats (one read transaction per call). */
  missing(ids: readonly string[]): string[] {
    this.assertOpen();
    const unique = [...new Set(ids)];
    unique.forEach((id) => assertChunkId(id));
    const absent = this.index.absent(unique.map(idToKey));
    return unique.filter((_, i) => absent[i]);
  }

  size(id: string): number | undefined {
    this.assertOpen();
    assertChunkId(id);
    return this.index.lookup(idToKey(id))?.length;
  }

  /**
   * The chunk's bytes. `verify` (default: the store's `verifyOnRead`) re-hashes them: a mismatch is a
   * 'corrupt' error, a short pack a 'truncated' error, an unknown id 'not-found'; each names the id.
   */
  async get(id: string, opts: { verify?: boolean } = {}): Promise<Buffer> {
    this.assertOpen();
    assertChunkId(id);
    const key = idToKey(id);
    const data = await this.withRow(key, async (row) => {
      const record = await this.packs.read(row.pack, row.offset, RECORD_HEADER_BYTES + row.length);
      return decodeRecord(record, key, row.length, `pack ${this.packs.path(row.pack)} at ${row.offset}`);
    });
    if ((opts.verify ?? this.opts.verifyOnRead) && !matchesKey(key, data)) throw corrupt(id);
    return data;
  }

  /**
   * Many chunks in the order asked, for serving batches: one index lookup per id, and records that lie
   * back to back in a pack read with one read of up to `runBytes` (a fresh sync asks for chunks in the
   * order they were stored, so a batch becomes a few large reads instead of one per chunk), `aheadRuns`
   * reads in flight. A missing, truncated or corrupt chunk (`verify`) yields no data and the problem;
   * it never stops the others. `data` is a view into a shared run buffer: copy it to keep it.
   */
  async *readMany(ids: readonly string[], opts: ReadManyOptions = {}): AsyncGenerator<ReadManyRecord> {
    this.assertOpen();
    const verify = opts.verify ?? this.opts.verifyOnRead;
    const runBytes = opts.runBytes ?? READ_STREAM_HIGH_WATER_MARK;
    const aheadRuns = opts.aheadRuns ?? 4;
    const runs: ReadRun[] = [];
    let run: ReadRun | undefined;
    ids.forEach((id) => assertChunkId(id));
    const keys = ids.map(idToKey);
    // One read transaction for the whole batch instead of a WAL snapshot per lookup: 2.5-3 µs per id
    // against 10-11 µs (14,000 lookups of a 1 GiB package; `bench/store.ts` shows the same for has()
    // against missing(): 115k against 387k ids/s), 0.1 s of a depot's CPU per GiB served.
    const rows = this.index.lookupMany(keys);
    for (const [i, id] of ids.entries()) {
      const key = keys[i]!;
      const row = rows[i];
      const bytes = row ? RECORD_HEADER_BYTES + row.length : 0;
      if (row && run?.pack === row.pack && run.end === row.offset && run.end - run.start + bytes <= runBytes) {
        run.items.push({ id, key, row });
        run.end += bytes;
        continue;
      }
      run = row ? { pack: row.pack, start: row.offset, end: row.offset + bytes, items: [{ id, key, row }] } : { pack: -1, start: 0, end: 0, items: [{ id, key }] };
      runs.push(run);
      if (!row) run = undefined;
    }
    const pool = opts.pool;
    const reads: Array<Promise<{ buf: Buffer; block?: ArrayBuffer } | undefined>> = [];
    const startRead = (r: ReadRun) => {
      if (r.pack < 0) return Promise.resolve(undefined);
      const target = pool?.take(r.end - r.start);
      return this.packs.read(r.pack, r.start, r.end - r.start, target?.buf).then(
        (buf) => (target?.block ? { buf, block: target.block } : { buf }),
        () => {
          if (target?.block) pool!.give(target.block);
          return undefined;
        },
      );
    };
    let next = 0;
    for (const r of runs) {
      while (next < runs.length && reads.length < aheadRuns) reads.push(startRead(runs[next++] as ReadRun));
      const got = await reads.shift();
      const buf = got?.buf;
      const block = got?.block;
      const release = block ? () => pool!.give(block) : undefined;
      const last = r.items.length - 1;
      for (const [i, it] of r.items.entries()) {
        const tail = i === last && release ? { release } : {};
        if (!it.row) {
          yield { id: it.id, data: undefined, problem: notFound(it.id), ...tail };
          continue;
        }
        const where = `pack ${this.packs.path(it.row.pack)} at ${it.row.offset}`;
        try {
          // A run that could not be read as a whole (a pack moved by gc, a short pack) falls back to one
          // chunk at a time, which re-resolves the row.
          const data = buf ? decodeRecord(buf.subarray(it.row.offset - r.start), it.key, it.row.length, where) : await this.get(it.id, { verify: false });
          if ((verify === true || (typeof verify === 'function' && verify(it.id))) && !matchesKey(it.key, data)) throw corrupt(it.id);
          yield { id: it.id, data, ...tail };
        } catch (e) {
          yield { id: it.id, data: undefined, problem: e instanceof DepotsyncError ? e : fromSystemError(e, `read chunk ${it.id} from ${where}`), ...tail };
        }
      }
    }
  }

  /**
   * Bytes `start`..`end` (inclusive, as in an HTTP Range) of a chunk, without verification (a part of
   * a chunk cannot be checked against its id; serve whole chunks through `get` to verify).
   */
  async readRange(id: string, start: number, end: number): Promise<Buffer> {
    this.assertOpen();
    assertChunkId(id);
    const key = idToKey(id);
    return this.withRow(key, async (row) => {
      checkRange(id, start, end, row.length);
      const where = `pack ${this.packs.path(row.pack)} at ${row.offset}`;
      const header = await this.packs.read(row.pack, row.offset, RECORD_HEADER_BYTES);
      checkRecordHeader(header, key, row.length, where);
      const want = end - start + 1;
      const bytes = await this.packs.read(row.pack, row.offset + RECORD_HEADER_BYTES + start, want);
      if (bytes.length < want) throw truncated(id, where, start + bytes.length, row.length);
      return bytes;
    });
  }

  /**
   * A stream of the chunk (or of `range`, inclusive ends) in 1 MiB pieces for serving; unverified like
   * `readRange`. A missing id throws now; a truncated pack errors the stream with 'truncated'.
   */
  createReadStream(id: string, range?: { start: number; end: number }): Readable {
    this.assertOpen();
    assertChunkId(id);
    const row = this.index.lookup(idToKey(id));
    if (!row) throw notFound(id);
    const start = range?.start ?? 0;
    const end = range?.end ?? row.length - 1;
    if (row.length > 0 || range) checkRange(id, start, end, row.length);
    const self = this;
    async function* pieces(): AsyncGenerator<Buffer> {
      for (let pos = start; pos <= end; pos += READ_STREAM_HIGH_WATER_MARK) {
        const n = Math.min(READ_STREAM_HIGH_WATER_MARK, end - pos + 1);
        yield await self.readRange(id, pos, pos + n - 1);
      }
    }
    return Readable.from(pieces(), { objectMode: false, highWaterMark: READ_STREAM_HIGH_WATER_MARK });
  }

  /** Look up a row and read through it; if the pack vanished under us (GC in another process), look again once. */
  private async withRow<T>(key: Buffer, read: (row: ChunkRow) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const row = this.index.lookup(key);
      if (!row) throw notFound(key.toString('hex'));
      try {
        return await read(row);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && attempt === 0) {
          await this.packs.evict(row.pack);
          continue;
        }
        if (e instanceof DepotsyncError) throw e;
        throw fromSystemError(e, `read chunk ${key.toString('hex')} from ${this.packs.path(row.pack)}`);
      }
    }
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
        this.log.warn({ chunk: id, err: (e as Error).message }, 'could not keep a copy of the quarantined chunk');
      }
      this.index.deleteRows([key]);
      this.log.warn({ chunk: id }, 'chunk quarantined');
      return true;
    });
  }

  /**
   * Remove every chunk for which `isLive(id)` is false and that is older than the grace period, then
   * compact packs that became mostly dead. Logged as named, timed steps (gc.ts).
   */
  async gc(isLive: (id: string) => boolean, options: GcOptions = {}): Promise<GcResult> {
    this.assertOpen();
    return runGc(this.internals(), isLive, options);
  }

  private internals(): StoreInternals {
    return {
      index: this.index,
      packs: this.packs,
      lock: this.lock,
      log: this.log,
      opts: this.opts,
      quarantineDir: this.quarantineDir,
      appendRecords: (records, avoidPack) => this.appendRecords(records, avoidPack),
    };
  }

  // ---- the rest ------------------------------------------------------------------------------

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

function notFound(id: string): DepotsyncError {
  return new DepotsyncError('not-found', `chunk ${id} is not in the store`, { hint: 'sync again to fetch it' });
}

function checkRange(id: string, start: number, end: number, length: number): void {
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end >= length) {
    throw new DepotsyncError('bad-input', `chunk ${id}: range ${start}-${end} is outside its ${length} bytes`);
  }
}
