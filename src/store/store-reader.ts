import { Readable } from 'node:stream';
import { DepotsyncError, fromSystemError } from '../errors.js';
import type { SizedBufferPool } from './buffer-pool.js';
import { assertChunkId, idToKey, matchesKey } from './chunk-id.js';
import { rowEncoding, rowPlainLength, type ChunkIndex, type ChunkRow } from './chunk-index.js';
import { plainBytes, type ChunkEncoding } from './encoding.js';
import type { PackFiles } from './pack-files.js';
import { checkRecordHeader, decodeRecord, RECORD_HEADER_BYTES, truncated } from './pack-format.js';

/** highWaterMark of `createReadStream`: serving chunks over HTTP reads in 1 MiB pieces. */
export const READ_STREAM_HIGH_WATER_MARK = 1024 * 1024;

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
  /**
   * Yield chunks as stored (a zstd frame where the store holds one, to serve without recompressing)
   * instead of their plain bytes (default).
   */
  stored?: boolean;
}

export interface ReadManyRecord {
  id: string;
  /** The plain bytes, or with `stored` the bytes as stored (see `encoding`). */
  data: Buffer | undefined;
  /** How `data` is encoded ('plain' unless read with `stored`). */
  encoding?: ChunkEncoding;
  /** The chunk's plain length (with `data`). */
  plainLength?: number;
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

/** A chunk as stored: its bytes (a zstd frame when `encoding` says so) and its plain length. */
export interface StoredChunk {
  data: Buffer;
  encoding: ChunkEncoding;
  plainLength: number;
}

/** The plain bytes of a record as read, decoded with its row's plain length as the cap. */
function decodeStored(id: string, row: ChunkRow, stored: Buffer, where: string): Buffer {
  const encoding = rowEncoding(row);
  if (encoding === 'plain') return stored;
  try {
    const plain = plainBytes(encoding, stored, rowPlainLength(row), `chunk ${id} in ${where}`);
    return Buffer.from(plain.buffer, plain.byteOffset, plain.length);
  } catch (e) {
    // A stored frame that does not decode is disk damage like a wrong hash.
    if (e instanceof DepotsyncError && e.code !== 'corrupt')
      throw new DepotsyncError('corrupt', e.message, { hint: e.hint, cause: e });
    throw e;
  }
}

/** What the reader works with. */
export interface ReaderParts {
  readonly index: ChunkIndex;
  readonly packs: PackFiles;
  /** The default of `verify` (ChunkStoreOptions.verifyOnRead). */
  readonly verifyOnRead: boolean;
  /** Throws once the store is closed. */
  readonly assertOpen: () => void;
}

/**
 * The reading side of the chunk store: existence (`has`, `missing`, `size`), whole chunks (`get`),
 * batches in the order asked with back-to-back records read together (`readMany`), and unverified
 * parts of a chunk (`readRange`, `createReadStream`). Reads never take the write lock; a pack that
 * compaction in another process deleted under a read is looked up again once.
 */
export class StoreReader {
  private readonly index: ChunkIndex;
  private readonly packs: PackFiles;
  private readonly verifyOnRead: boolean;
  private readonly assertOpen: () => void;

  constructor(parts: ReaderParts) {
    this.index = parts.index;
    this.packs = parts.packs;
    this.verifyOnRead = parts.verifyOnRead;
    this.assertOpen = parts.assertOpen;
  }

  has(id: string): boolean {
    this.assertOpen();
    assertChunkId(id);
    return this.index.has(idToKey(id));
  }

  /**
   * The ids of `ids` that are not stored, in first-seen order without repeats
   * (one read transaction per call).
   */
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
    const row = this.index.lookup(idToKey(id));
    return row && rowPlainLength(row);
  }

  /**
   * The chunk's bytes. `verify` (default: the store's `verifyOnRead`) re-hashes them: a mismatch is a
   * 'corrupt' error, a short pack a 'truncated' error, an unknown id 'not-found'; each names the id.
   */
  async get(id: string, opts: { verify?: boolean } = {}): Promise<Buffer> {
    const s = await this.getStored(id, { verify: false });
    const data = s.encoding === 'plain' ? s.data : decodeStored(id, s.row, s.data, s.where);
    if ((opts.verify ?? this.verifyOnRead) && !matchesKey(idToKey(id), data)) throw corrupt(id);
    return data;
  }

  /**
   * The chunk as stored (a zstd frame or plain bytes), for serving it without recompressing. `verify`
   * (default: `verifyOnRead`) decodes it, capped at its plain length, and re-hashes the result.
   */
  async getStored(
    id: string,
    opts: { verify?: boolean } = {},
  ): Promise<StoredChunk & { row: ChunkRow; where: string }> {
    this.assertOpen();
    assertChunkId(id);
    const key = idToKey(id);
    const got = await this.withRow(key, async (row) => {
      const where = `pack ${this.packs.path(row.pack)} at ${row.offset}`;
      const record = await this.packs.read(row.pack, row.offset, RECORD_HEADER_BYTES + row.length);
      return { row, where, data: decodeRecord(record, key, row.length, where, rowEncoding(row)) };
    });
    const { row, where, data } = got;
    const encoding = rowEncoding(row);
    if (opts.verify ?? this.verifyOnRead) {
      const plain = encoding === 'plain' ? data : decodeStored(id, row, data, where);
      if (!matchesKey(key, plain)) throw corrupt(id);
    }
    return { data, encoding, plainLength: rowPlainLength(row), row, where };
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
    const verify = opts.verify ?? this.verifyOnRead;
    const stored = opts.stored ?? false;
    const runBytes = opts.runBytes ?? READ_STREAM_HIGH_WATER_MARK;
    const aheadRuns = opts.aheadRuns ?? 4;
    const runs: ReadRun[] = [];
    let run: ReadRun | undefined;
    ids.forEach((id) => assertChunkId(id));
    const keys = ids.map(idToKey);
    // One read transaction for the whole batch instead of a WAL snapshot per lookup: a lookup costs
    // a quarter as much (bench/README.md, `store`).
    const rows = this.index.lookupMany(keys);
    for (const [i, id] of ids.entries()) {
      const key = keys[i]!;
      const row = rows[i];
      const bytes = row ? RECORD_HEADER_BYTES + row.length : 0;
      if (
        row &&
        run?.pack === row.pack &&
        run.end === row.offset &&
        run.end - run.start + bytes <= runBytes
      ) {
        run.items.push({ id, key, row });
        run.end += bytes;
        continue;
      }
      run = row
        ? { pack: row.pack, start: row.offset, end: row.offset + bytes, items: [{ id, key, row }] }
        : { pack: -1, start: 0, end: 0, items: [{ id, key }] };
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
          const encoding = rowEncoding(it.row);
          const raw = buf
            ? decodeRecord(buf.subarray(it.row.offset - r.start), it.key, it.row.length, where, encoding)
            : (await this.getStored(it.id, { verify: false })).data;
          const check = verify === true || (typeof verify === 'function' && verify(it.id));
          // Decoded when the caller wants plain bytes or the hash must be checked; served as stored else.
          const plain =
            encoding === 'plain'
              ? raw
              : !stored || check
                ? decodeStored(it.id, it.row, raw, where)
                : undefined;
          if (check && !matchesKey(it.key, plain!)) throw corrupt(it.id);
          const plainLength = rowPlainLength(it.row);
          if (stored) yield { id: it.id, data: raw, encoding, plainLength, ...tail };
          else yield { id: it.id, data: plain!, encoding: 'plain', plainLength, ...tail };
        } catch (e) {
          yield {
            id: it.id,
            data: undefined,
            problem:
              e instanceof DepotsyncError ? e : fromSystemError(e, `read chunk ${it.id} from ${where}`),
            ...tail,
          };
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
    const first = this.index.lookup(key);
    if (first && rowEncoding(first) !== 'plain') {
      // A part of a frame is no part of the chunk: decode the whole (at most a few hundred KiB).
      const plain = await this.get(id, { verify: false });
      checkRange(id, start, end, plain.length);
      return plain.subarray(start, end + 1);
    }
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
    const length = rowPlainLength(row);
    const start = range?.start ?? 0;
    const end = range?.end ?? length - 1;
    if (length > 0 || range) checkRange(id, start, end, length);
    const readRange = (from: number, to: number) => this.readRange(id, from, to);
    async function* pieces(): AsyncGenerator<Buffer> {
      for (let pos = start; pos <= end; pos += READ_STREAM_HIGH_WATER_MARK) {
        const n = Math.min(READ_STREAM_HIGH_WATER_MARK, end - pos + 1);
        yield await readRange(pos, pos + n - 1);
      }
    }
    return Readable.from(pieces(), { objectMode: false, highWaterMark: READ_STREAM_HIGH_WATER_MARK });
  }

  /**
   * Look up a row and read through it; if the pack vanished under us (GC in
   * another process), look again once.
   */
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
}

function notFound(id: string): DepotsyncError {
  return new DepotsyncError('not-found', `chunk ${id} is not in the store`, {
    hint: 'sync again to fetch it',
  });
}

function checkRange(id: string, start: number, end: number, length: number): void {
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end >= length) {
    throw new DepotsyncError(
      'bad-input',
      `chunk ${id}: range ${start}-${end} is outside its ${length} bytes`,
    );
  }
}
