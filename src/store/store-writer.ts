import { DepotsyncError, fromSystemError } from '../errors.js';
import { fsyncDir } from '../fs/atomic-write.js';
import type { Logger } from '../log.js';
import { assertChunkId, idToKey, isSelfHashed, matchesKey, type ChunkInput } from './chunk-id.js';
import type { ChunkIndex, NewRow } from './chunk-index.js';
import { compressChunk } from './compress-chunk.js';
import { plainBytes, type ChunkEncoding } from './encoding.js';
import type { ChunkStoreOptions } from './options.js';
import { appendDurably, PackAppender, type PackFiles } from './pack-files.js';
import {
  encodeRecordHeader,
  MAX_CHUNK_BYTES,
  PACK_HEADER_BYTES,
  PACK_MAGIC,
  RECORD_HEADER_BYTES,
} from './pack-format.js';
import type { WriteLock } from './write-lock.js';

export interface PutStreamOptions {
  /** Bytes appended between two durable commits (default 256 MiB): the most a crash can make re-done. */
  checkpointBytes?: number;
  /** Writeback of the pack is started (not waited for) after this many bytes (default 32 MiB). */
  writebackBytes?: number;
  onWritten?: (group: number) => void;
  onDurable?: (bytesWritten: number) => void;
}

export interface PutResult {
  /** Chunks newly stored by this call (ids already present count as success, not as written). */
  written: number;
  /** Plain bytes of the chunks newly stored. */
  bytesWritten: number;
  /** What they took on disk (compressed where that paid). */
  storedBytes: number;
}

/**
 * Where a batch of records landed; `grewBytes` is what it added to the disk (a new pack's header included).
 */
export interface AppendResult {
  pack: number;
  size: number;
  rows: NewRow[];
  grewBytes: number;
}

/** What the writer works with: the store's index, pack files, write lock, logger and options. */
export interface WriterParts {
  readonly index: ChunkIndex;
  readonly packs: PackFiles;
  readonly lock: WriteLock;
  readonly log: Logger;
  readonly opts: ChunkStoreOptions;
  /** Throws once the store is closed. */
  readonly assertOpen: () => void;
}

/** A record to append: the binary chunk id, its bytes as stored, their encoding and the plain length. */
export interface NewRecord {
  key: Buffer;
  data: Uint8Array;
  encoding: ChunkEncoding;
  plainLength: number;
}

type QueuedPut = { items: NewRecord[]; resolve: (r: PutResult) => void; reject: (e: unknown) => void };

/**
 * The writing side of the chunk store (chunk-store.ts describes the format and the guarantees):
 * checked batches with group commit (`putMany`), long checkpointed streams (`putStream`), and the
 * durable append both use, which compaction uses too (`appendRecords`).
 */
export class StoreWriter {
  private readonly index: ChunkIndex;
  private readonly packs: PackFiles;
  private readonly lock: WriteLock;
  private readonly log: Logger;
  private readonly opts: ChunkStoreOptions;
  private readonly assertOpen: () => void;
  private readonly commitQueue: QueuedPut[] = [];
  private committing = false;

  constructor(parts: WriterParts) {
    this.index = parts.index;
    this.packs = parts.packs;
    this.lock = parts.lock;
    this.log = parts.log;
    this.opts = parts.opts;
    this.assertOpen = parts.assertOpen;
  }

  /**
   * Store chunks durably. Each chunk's bytes are hashed and checked against its id before anything
   * is written (a mismatch stores nothing of the batch); ids already present are skipped; one
   * fdatasync of the pack and one index commit per call.
   */
  async putMany(chunks: readonly ChunkInput[]): Promise<PutResult> {
    this.assertOpen();
    if (!Array.isArray(chunks))
      throw new DepotsyncError('bad-input', 'putMany: expected an array of {id, data}');
    const unique = new Map<string, ChunkInput>();
    chunks.forEach((c: ChunkInput, i) => {
      assertChunkId(c?.id, `putMany: chunks[${i}].id`);
      if (!(c.data instanceof Uint8Array))
        throw new DepotsyncError('bad-input', `putMany: chunks[${i}].data (chunk ${c.id}) is not bytes`);
      if (c.data.length > MAX_CHUNK_BYTES) {
        throw new DepotsyncError(
          'too-large',
          `chunk ${c.id}: ${c.data.length} bytes, above the store's limit of ${MAX_CHUNK_BYTES}`,
        );
      }
      if (!unique.has(c.id)) unique.set(c.id, c);
    });
    // Check every chunk before any byte reaches the disk: forged or damaged data is never stored,
    // and a batch with one bad chunk leaves nothing half-visible.
    const items: NewRecord[] = [];
    for (const c of unique.values()) {
      const key = idToKey(c.id);
      if (!isSelfHashed(c) && !matchesKey(key, c.data)) {
        throw new DepotsyncError(
          'hash-mismatch',
          `chunk ${c.id}: its ${c.data.length} bytes do not hash to its id`,
          {
            hint: 'the sender delivered damaged or forged data; nothing of this batch was stored; fetch it again',
          },
        );
      }
      if (!isSelfHashed(c) && c.zstd) {
        // A frame given with bytes this process did not hash: it must decode (capped) to exactly them.
        const back = plainBytes('zstd', c.zstd, c.data.length, `chunk ${c.id}`);
        if (!Buffer.from(back).equals(c.data))
          throw new DepotsyncError('hash-mismatch', `chunk ${c.id}: its zstd frame decodes to other bytes`, {
            hint: 'nothing of this batch was stored; fetch it again',
          });
      }
      items.push(this.record(key, c));
    }
    if (items.length === 0) return { written: 0, bytesWritten: 0, storedBytes: 0 };
    // Group commit: calls that arrive while another batch is being written and fdatasynced (a sync
    // fetches several batches at once) are stored together in the next transaction: one fdatasync and
    // one index commit for all of them instead of one each (a waited fdatasync costs ~30 ms here).
    return new Promise<PutResult>((resolve, reject) => {
      this.commitQueue.push({ items, resolve, reject });
      if (!this.committing) void this.commitQueued();
    });
  }

  private async commitQueued(): Promise<void> {
    this.committing = true;
    try {
      while (this.commitQueue.length > 0) {
        const calls = this.commitQueue.splice(0);
        let stored: { pack: number; chunks: number } | undefined;
        try {
          const results = await this.lock.transaction(async () => {
            const nowS = Math.floor(this.opts.now() / 1000);
            const perCall = calls.map(() => ({ written: 0, bytesWritten: 0, storedBytes: 0 }));
            const fresh: NewRecord[] = [];
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
                perCall[i]!.bytesWritten += it.plainLength;
                perCall[i]!.storedBytes += it.data.length;
              }
            });
            // Re-put of a stored chunk restarts its GC grace period (a publish referencing it is in flight).
            if (present.length > 0) this.index.touch(present, nowS, nowS - 60);
            if (fresh.length === 0) return perCall;
            const { pack, size, rows } = await this.appendRecords(fresh);
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
   * per checkpoint instead of one per group (bench/README.md, `ingest`).
   * Holds the write lock from start to end: other writers of this store wait. `onWritten(i)`: group i's
   * bytes are in the kernel (its buffers may be reused); `onDurable(bytes)`: a checkpoint committed.
   * Chunks must be checked already (`hashedChunk`/`workerHashedChunk`): this does not re-hash.
   */
  async putStream(
    groups: AsyncIterable<readonly ChunkInput[]>,
    opts: PutStreamOptions = {},
  ): Promise<PutResult> {
    this.assertOpen();
    const checkpointBytes = opts.checkpointBytes ?? 256 * 1024 * 1024;
    const writebackBytes = opts.writebackBytes ?? 32 * 1024 * 1024;
    const it = groups[Symbol.asyncIterator]();
    const total: PutResult = { written: 0, bytesWritten: 0, storedBytes: 0 };
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
          const reuse =
            last !== undefined &&
            (last.size + checkpointBytes <= this.opts.maxPackBytes || last.size === PACK_HEADER_BYTES);
          const pack = reuse ? last.id : this.index.createPack(PACK_HEADER_BYTES);
          const writer = await PackAppender.open(
            this.packs.path(pack),
            !reuse,
            reuse ? last.size : 0,
            this.opts.durable ? writebackBytes : 0,
          );
          const rows: NewRow[] = [];
          const seen = new Set<string>();
          try {
            while (group) {
              const present: Buffer[] = [];
              const buffers: Buffer[] = [];
              for (const c of group) {
                if (!isSelfHashed(c))
                  throw new DepotsyncError(
                    'internal',
                    `putStream: chunk ${c.id} was not hashed by this process`,
                  );
                if (seen.has(c.id)) continue;
                seen.add(c.id);
                const key = idToKey(c.id);
                if (this.index.has(key)) {
                  present.push(key);
                  continue;
                }
                const r = this.record(key, c);
                const header = encodeRecordHeader(key, r.data.length, r.encoding);
                rows.push({
                  key,
                  offset: writer.position,
                  length: r.data.length,
                  encoding: r.encoding,
                  plainLength: r.plainLength,
                });
                buffers.push(header, Buffer.from(r.data.buffer, r.data.byteOffset, r.data.length));
                writer.position += header.length + r.data.length;
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
            // The rows go in while the checkpoint's last fdatasync runs (`finish` has issued it), so
            // the disk overlaps this thread's indexing. Other
            // connections see them only at COMMIT, which comes only once the fdatasync succeeded
            // (else ROLLBACK); reads on this process's own connection may see them meanwhile, and
            // every byte they point at is written (in the page cache, not yet certainly on disk).
            const finishing = writer.finish(this.opts.durable);
            finishing.catch(() => undefined); // awaited just below, once the rows are in
            const added = this.index.addRows(pack, writer.position, rows, nowS);
            await finishing;
            if (!reuse && this.opts.durable)
              await fsyncDir(this.packs.dir).catch((e: unknown) =>
                Promise.reject(fromSystemError(e, `fsync ${this.packs.dir}`)),
              );
            return added;
          } finally {
            await writer.close();
          }
        });
        total.written += r.inserted;
        total.bytesWritten += r.plainBytes;
        total.storedBytes += r.bytes;
        // Logged after COMMIT: a process killed after this line keeps the checkpoint (tests kill on it).
        this.log.debug({ chunks: r.inserted, bytes: r.bytes }, 'stored checkpoint');
        opts.onDurable?.(total.bytesWritten);
        group = full ? await pull() : undefined;
      }
    });
    return total;
  }

  /**
   * The record a checked chunk is stored as: the zstd frame it came with, else its plain bytes
   * compressed at the store's level when that pays (encoding.ts), else plain.
   */
  private record(key: Buffer, c: ChunkInput): NewRecord {
    const plainLength = c.data.length;
    const zstd = c.zstd === undefined ? compressChunk(c.data, this.opts.compressLevel) : c.zstd;
    return zstd
      ? { key, data: zstd, encoding: 'zstd', plainLength }
      : { key, data: c.data, encoding: 'plain', plainLength };
  }

  /**
   * Append records to the current pack (or a new one) and fdatasync; the caller holds the write
   * transaction and commits the returned rows. `avoidPack`: never append to it (the pack being compacted).
   */
  async appendRecords(records: NewRecord[], avoidPack?: number): Promise<AppendResult> {
    const batchBytes = records.reduce((n, r) => n + RECORD_HEADER_BYTES + r.data.length, 0);
    const last = this.index.packs().at(-1);
    const reuse =
      last !== undefined &&
      last.id !== avoidPack &&
      (last.size + batchBytes <= this.opts.maxPackBytes || last.size === PACK_HEADER_BYTES);
    const pack = reuse ? last.id : this.index.createPack(PACK_HEADER_BYTES);
    const start = reuse ? last.size : PACK_HEADER_BYTES;
    const buffers: Buffer[] = reuse ? [] : [PACK_MAGIC];
    const rows: NewRow[] = [];
    let offset = start;
    for (const r of records) {
      buffers.push(
        encodeRecordHeader(r.key, r.data.length, r.encoding),
        Buffer.from(r.data.buffer, r.data.byteOffset, r.data.length),
      );
      rows.push({
        key: r.key,
        offset,
        length: r.data.length,
        encoding: r.encoding,
        plainLength: r.plainLength,
      });
      offset += RECORD_HEADER_BYTES + r.data.length;
    }
    const size = await appendDurably(
      this.packs.path(pack),
      !reuse,
      reuse ? start : 0,
      buffers,
      this.opts.durable,
    );
    if (!reuse && this.opts.durable)
      await fsyncDir(this.packs.dir).catch((e: unknown) =>
        Promise.reject(fromSystemError(e, `fsync ${this.packs.dir}`)),
      );
    return { pack, size, rows, grewBytes: size - (reuse ? start : 0) };
  }
}
