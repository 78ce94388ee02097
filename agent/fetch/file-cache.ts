import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { removeStaleTempFiles } from '../../src/fs/atomic-write.js';
import { blake3, digestEquals } from '../../src/hash/blake3.js';
import type { Logger } from '../../src/log.js';
import { assertChunkId, isChunkId, isSelfHashed, type ChunkInput } from '../../src/store/chunk-id.js';

/**
 * The agent's chunk cache as plain files, one per chunk, named by its id under a folder fanned out by
 * the id's first two hex digits (`A/cache/files-v1/ab/ab12…`): nothing to compile (no SQLite), nothing
 * to recover after a crash. Each file is written under a temporary name and renamed into place, so a
 * kill mid-write never leaves half a chunk under a chunk's name; a power loss can (the files are not
 * flushed unless `durable`), which is why readers verify what they read (`get` with `verify`, or the
 * fetch's own check of every cached chunk).
 *
 * A file holds a chunk as it was stored, with its encoding and plain length in a 16-byte header, so a
 * compressed record can be kept as it arrived:
 *
 *   magic "DSA1" | encoding (0 plain, 1 zstd) | 3 zero bytes | plain length (u64 LE) | stored bytes
 */

export type CacheEncoding = 'plain' | 'zstd';

/** One chunk as the cache keeps it: its stored form, how it is encoded and how long it is plain. */
export interface CachedRecord {
  readonly id: string;
  readonly encoding: CacheEncoding;
  readonly plainLength: number;
  readonly stored: Uint8Array;
}

/** What the agent's fetch code needs from its cache (fetch.ts, cache.ts, staging.ts). */
export interface ChunkCache {
  /** The ids of `ids` the cache does not hold (in the order given). */
  missing(ids: readonly string[]): string[];
  /** The plain bytes of a chunk; with `verify`, hashed against its id first (a mismatch is quarantined). */
  get(id: string, opts?: { verify?: boolean }): Promise<Buffer>;
  /** The chunk as stored (its encoding and plain length included). */
  getRecord(id: string): Promise<CachedRecord>;
  /** Plain chunks; each is hashed against its id unless this process computed the id (hashedChunk). */
  putMany(chunks: readonly ChunkInput[]): Promise<void>;
  /** Stored records; the caller has verified them (a plain one is hashed here all the same). */
  putRecords(records: readonly CachedRecord[]): Promise<void>;
  /** Remove a chunk found bad. True when it was there. */
  quarantine(id: string): Promise<boolean>;
  stats(): { chunks: number; bytes: number };
  /** Remove every chunk `keep` does not want. */
  gc(keep: (id: string) => boolean): Promise<{ removed: number; bytesFreed: number }>;
  close(): Promise<void>;
}

export const FILE_CACHE_DIR = 'files-v1';
/** The SQLite chunk store earlier agents kept under A/cache: removed at open (a cache starts afresh). */
const LEGACY_STORE_DIR = 'chunks-v1';

const MAGIC = Buffer.from('DSA1', 'latin1');
const HEADER_BYTES = 16;
const ENCODINGS: readonly CacheEncoding[] = ['plain', 'zstd'];
/** The longest plain chunk a record may claim (the chunker's maximum is 256 KiB; room to spare). */
const MAX_PLAIN_BYTES = 64 * 1024 * 1024;

export interface FileChunkCacheOptions {
  logger: Logger;
  /** Flush each file before its rename (survives power loss); the agent leaves it off, as before. */
  durable?: boolean;
  /** Plain bytes of a compressed record; without it, `get` refuses one (the fetch downloads it again). */
  decode?: (record: CachedRecord) => Buffer;
}

function header(encoding: CacheEncoding, plainLength: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(h, 0);
  h[4] = ENCODINGS.indexOf(encoding);
  h.writeBigUInt64LE(BigInt(plainLength), 8);
  return h;
}

function checkRecord(r: CachedRecord): void {
  assertChunkId(r.id, 'cached chunk id');
  if (!ENCODINGS.includes(r.encoding))
    throw new DepotsyncError('bad-input', `cached chunk ${r.id}: unknown encoding ${String(r.encoding)}`);
  if (!Number.isSafeInteger(r.plainLength) || r.plainLength < 0 || r.plainLength > MAX_PLAIN_BYTES)
    throw new DepotsyncError('bad-input', `cached chunk ${r.id}: plain length ${r.plainLength} out of range`);
  if (r.encoding === 'plain' && r.stored.byteLength !== r.plainLength)
    throw new DepotsyncError(
      'bad-input',
      `cached chunk ${r.id}: plain record of ${r.stored.byteLength} bytes claims ${r.plainLength}`,
    );
}

export class FileChunkCache implements ChunkCache {
  /** Ids held and their file sizes (found at open, kept up to date by this process). */
  private readonly index = new Map<string, number>();
  private bytes = 0;
  private closed = false;

  private constructor(
    private readonly root: string,
    private readonly opts: FileChunkCacheOptions,
  ) {}

  /** Open (creating) the cache under `dir` (A/cache); finds what is there and clears what killed writers left. */
  static async open(dir: string, opts: FileChunkCacheOptions): Promise<FileChunkCache> {
    const root = join(dir, FILE_CACHE_DIR);
    try {
      mkdirSync(root, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fromSystemError(e, `chunk cache ${root}`);
    }
    const legacy = join(dir, LEGACY_STORE_DIR);
    try {
      if (statSync(legacy, { throwIfNoEntry: false })?.isDirectory()) {
        rmSync(legacy, { recursive: true, force: true });
        opts.logger.info(
          { removed: legacy },
          'chunk cache of an earlier version removed; the cache starts afresh',
        );
      }
    } catch (e) {
      opts.logger.warn({ dir: legacy, err: (e as Error).message }, 'old chunk cache could not be removed');
    }
    const cache = new FileChunkCache(root, opts);
    await cache.scan();
    return cache;
  }

  private async scan(): Promise<void> {
    for (const fan of readdirSync(this.root)) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      const folder = join(this.root, fan);
      let stale = false;
      for (const name of readdirSync(folder)) {
        if (name.endsWith('.tmp')) {
          stale = true;
          continue;
        }
        if (!isChunkId(name) || !name.startsWith(fan)) continue;
        const size = statSync(join(folder, name), { throwIfNoEntry: false })?.size;
        if (size === undefined) continue;
        this.index.set(name, size);
        this.bytes += size;
      }
      // Temporary files of writers that were killed: theirs only, never a live writer's.
      if (stale) await removeStaleTempFiles(folder, '');
    }
  }

  private pathOf(id: string): string {
    return join(this.root, id.slice(0, 2), id);
  }

  private assertOpen(): void {
    if (this.closed) throw new DepotsyncError('internal', 'chunk cache used after close');
  }

  missing(ids: readonly string[]): string[] {
    this.assertOpen();
    return ids.filter((id) => !this.index.has(id));
  }

  async getRecord(id: string): Promise<CachedRecord> {
    this.assertOpen();
    assertChunkId(id);
    const path = this.pathOf(id);
    let file: Buffer;
    try {
      file = await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        this.forget(id);
        throw new DepotsyncError('not-found', `chunk ${id} is not in the cache`);
      }
      throw fromSystemError(e, `cached chunk ${path}`);
    }
    const bad = (why: string) =>
      new DepotsyncError('corrupt', `cached chunk ${path}: ${why}`, {
        hint: 'it is removed and downloaded again',
      });
    if (file.length < HEADER_BYTES || !file.subarray(0, 4).equals(MAGIC)) throw bad('no record header');
    const encoding = ENCODINGS[file[4] as number];
    if (encoding === undefined || file[5] !== 0 || file[6] !== 0 || file[7] !== 0)
      throw bad(`unknown encoding ${file[4]}`);
    const plainLength = Number(file.readBigUInt64LE(8));
    const stored = file.subarray(HEADER_BYTES);
    if (plainLength > MAX_PLAIN_BYTES || (encoding === 'plain' && stored.length !== plainLength))
      throw bad(`${stored.length} stored bytes for a plain length of ${plainLength}`);
    return { id, encoding, plainLength, stored };
  }

  async get(id: string, opts: { verify?: boolean } = {}): Promise<Buffer> {
    const r = await this.getRecord(id);
    let plain: Buffer;
    if (r.encoding === 'plain') {
      plain = Buffer.from(r.stored.buffer, r.stored.byteOffset, r.stored.byteLength);
    } else if (this.opts.decode) {
      plain = this.opts.decode(r);
      if (plain.length !== r.plainLength)
        throw new DepotsyncError(
          'corrupt',
          `cached chunk ${id}: decoded ${plain.length} bytes, its record says ${r.plainLength}`,
        );
    } else {
      throw new DepotsyncError(
        'corrupt',
        `cached chunk ${id} is ${r.encoding}-encoded and no decoder is set`,
        {
          hint: 'it is downloaded again',
        },
      );
    }
    if (opts.verify && !digestEquals(blake3(plain), Buffer.from(id, 'hex'))) {
      await this.quarantine(id);
      throw new DepotsyncError('hash-mismatch', `cached chunk ${id}: its bytes do not hash to its id`, {
        hint: 'the disk changed it; it was removed and is downloaded again',
      });
    }
    return plain;
  }

  async putMany(chunks: readonly ChunkInput[]): Promise<void> {
    const records: CachedRecord[] = [];
    for (const c of chunks) {
      assertChunkId(c.id);
      if (!isSelfHashed(c) && !digestEquals(blake3(c.data), Buffer.from(c.id, 'hex')))
        throw new DepotsyncError('hash-mismatch', `chunk ${c.id}: its bytes do not hash to its id`);
      records.push({ id: c.id, encoding: 'plain', plainLength: c.data.byteLength, stored: c.data });
    }
    await this.write(records);
  }

  async putRecords(records: readonly CachedRecord[]): Promise<void> {
    for (const r of records) {
      checkRecord(r);
      if (r.encoding === 'plain' && !digestEquals(blake3(r.stored), Buffer.from(r.id, 'hex')))
        throw new DepotsyncError('hash-mismatch', `chunk ${r.id}: its bytes do not hash to its id`);
    }
    await this.write(records);
  }

  private async write(records: readonly CachedRecord[]): Promise<void> {
    this.assertOpen();
    for (const r of records) {
      checkRecord(r);
      if (this.index.has(r.id)) continue;
      const path = this.pathOf(r.id);
      const folder = join(this.root, r.id.slice(0, 2));
      // The name removeStaleTempFiles knows: `.ID.PID-RANDOM.tmp`.
      const tmp = join(folder, `.${r.id}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
      try {
        mkdirSync(folder, { recursive: true, mode: 0o700 });
        const fh = await open(tmp, 'wx', 0o600);
        try {
          await fh.writev([header(r.encoding, r.plainLength), r.stored]);
          if (this.opts.durable) await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, path);
      } catch (e) {
        await unlink(tmp).catch(() => undefined);
        throw fromSystemError(e, `chunk cache ${path}`);
      }
      const size = HEADER_BYTES + r.stored.byteLength;
      this.index.set(r.id, size);
      this.bytes += size;
    }
  }

  private forget(id: string): number {
    const size = this.index.get(id);
    if (size === undefined) return 0;
    this.index.delete(id);
    this.bytes -= size;
    return size;
  }

  async quarantine(id: string): Promise<boolean> {
    this.assertOpen();
    assertChunkId(id);
    this.forget(id);
    try {
      await unlink(this.pathOf(id));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw fromSystemError(e, `cached chunk ${this.pathOf(id)}`);
    }
  }

  stats(): { chunks: number; bytes: number } {
    return { chunks: this.index.size, bytes: this.bytes };
  }

  async gc(keep: (id: string) => boolean): Promise<{ removed: number; bytesFreed: number }> {
    this.assertOpen();
    let removed = 0;
    let bytesFreed = 0;
    for (const id of [...this.index.keys()]) {
      if (keep(id)) continue;
      const size = this.forget(id);
      await unlink(this.pathOf(id)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw fromSystemError(e, `cached chunk ${this.pathOf(id)}`);
      });
      removed++;
      bytesFreed += size;
    }
    return { removed, bytesFreed };
  }

  async close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}
