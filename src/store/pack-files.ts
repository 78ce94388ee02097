import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fromSystemError } from '../errors.js';
import { writevAll } from '../fs/writev-all.js';
import { PACK_MAGIC, packFileName } from './pack-format.js';

/** Most iovecs one writev may carry (IOV_MAX on Linux). */
const MAX_IOVECS = 1024;

/**
 * File handles of the pack files: a small LRU of read handles (10 million chunks of 64 KiB make
 * ~600 packs of 1 GiB; a depot serving them should not hold 600 descriptors) and positional I/O.
 */
export class PackFiles {
  private readonly readers = new Map<number, Promise<FileHandle>>();

  constructor(
    readonly dir: string,
    private readonly maxOpen: number,
  ) {}

  path(packId: number): string {
    return join(this.dir, packFileName(packId));
  }

  /**
   * Read up to `length` bytes at `position` (into `into`, of exactly `length` bytes, when given);
   * returns fewer only at end of file (a truncated pack).
   */
  async read(packId: number, position: number, length: number, into?: Buffer): Promise<Buffer> {
    const fh = await this.reader(packId);
    const buf = into ?? Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, position + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === length ? buf : buf.subarray(0, got);
  }

  private reader(packId: number): Promise<FileHandle> {
    let p = this.readers.get(packId);
    if (p) {
      // Refresh LRU position.
      this.readers.delete(packId);
      this.readers.set(packId, p);
      return p;
    }
    p = open(this.path(packId), 'r');
    p.catch(() => this.readers.delete(packId));
    this.readers.set(packId, p);
    while (this.readers.size > this.maxOpen) {
      const [oldest, oldP] = this.readers.entries().next().value as [number, Promise<FileHandle>];
      this.readers.delete(oldest);
      // A read in flight on the evicted handle finishes first: close after a grace tick.
      void oldP.then(
        (fh) => setTimeout(() => void fh.close().catch(() => {}), 1000).unref(),
        () => {},
      );
    }
    return p;
  }

  /** Forget (and close) the read handle of a pack that was deleted, so its disk space is released. */
  async evict(packId: number): Promise<void> {
    const p = this.readers.get(packId);
    if (!p) return;
    this.readers.delete(packId);
    await p
      .then(
        (fh) => fh.close(),
        () => {},
      )
      .catch(() => {});
  }

  async closeAll(): Promise<void> {
    const all = [...this.readers.values()];
    this.readers.clear();
    await Promise.all(
      all.map((p) =>
        p
          .then(
            (fh) => fh.close(),
            () => {},
          )
          .catch(() => {}),
      ),
    );
  }
}

/**
 * A large append is written in pieces of this size, and once a piece is written an fdatasync of the
 * file starts while the next piece is copied in: the disk writes back piece k while piece k+1 is
 * being written, and the closing fdatasync only waits for the last piece (the role
 * sync_file_range plays in C; Node has no binding for it). Small appends are one piece, as before.
 */
export const APPEND_PIECE_BYTES = 8 * 1024 * 1024;

/**
 * Write `buffers` at `position` of a pack, drop anything past the end (the uncommitted tail of an
 * interrupted batch), and fdatasync. Returns the new end of the written data. Durable when it
 * resolves: the last fdatasync starts after every write has completed (unless `durable` is false: a
 * verified cache, see ChunkStoreOptions.durable).
 */
export async function appendDurably(
  path: string,
  create: boolean,
  position: number,
  buffers: Buffer[],
  durable = true,
): Promise<number> {
  let fh: FileHandle | undefined;
  let early: Promise<void> | undefined;
  let earlyError: unknown;
  try {
    fh = await open(path, create ? 'w' : 'r+');
    let pos = position;
    let sinceFlush = 0;
    for (const group of pieces(buffers)) {
      const bytesWritten = await writevAll(fh, group, pos);
      pos += bytesWritten;
      sinceFlush += bytesWritten;
      if (durable && sinceFlush >= APPEND_PIECE_BYTES && early === undefined) {
        // Start writeback of what is written so far; at most one in flight, awaited before the end.
        // Its error must be kept: Linux reports a writeback error to one fsync per descriptor, so
        // the final fdatasync would not see it again.
        early = fh.datasync().then(
          () => {
            early = undefined;
          },
          (e: unknown) => {
            earlyError ??= e;
            early = undefined;
          },
        );
        sinceFlush = 0;
      }
      if (earlyError !== undefined) throw earlyError;
    }
    await early;
    if (earlyError !== undefined) throw earlyError;
    const { size } = await fh.stat();
    if (size > pos) await fh.truncate(pos);
    if (durable) await fh.datasync();
    return pos;
  } catch (e) {
    throw fromSystemError(e, `append to pack ${path}`);
  } finally {
    await early; // never close the handle under an fdatasync in flight (it never rejects)
    await fh?.close();
  }
}

/** `buffers` in groups for one writev each: at most MAX_IOVECS buffers and about APPEND_PIECE_BYTES. */
function* pieces(buffers: Buffer[]): Generator<Buffer[]> {
  let group: Buffer[] = [];
  let bytes = 0;
  for (const b of buffers) {
    group.push(b);
    bytes += b.length;
    if (group.length === MAX_IOVECS || bytes >= APPEND_PIECE_BYTES) {
      yield group;
      group = [];
      bytes = 0;
    }
  }
  if (group.length > 0) yield group;
}

/**
 * A long append to one pack (ChunkStore.putStream): the uncommitted tail of an earlier interrupted
 * append dropped at `open`, positional writes at `position`, writeback started every `writebackBytes`
 * (one fdatasync in flight at a time, never waited for before `finish`), then one final fdatasync.
 */
export class PackAppender {
  /** Where the next record goes (the caller advances it as it lays records out). */
  position: number;
  private readonly start: number;
  private sinceWriteback = 0;
  private early: Promise<void> | undefined;
  private earlyError: unknown;

  private constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    start: number,
    private readonly writebackBytes: number,
  ) {
    this.start = start;
    this.position = start;
  }

  static async open(
    path: string,
    create: boolean,
    position: number,
    writebackBytes: number,
  ): Promise<PackAppender> {
    let fh: FileHandle;
    try {
      fh = await open(path, create ? 'w' : 'r+');
    } catch (e) {
      throw fromSystemError(e, `append to pack ${path}`);
    }
    const a = new PackAppender(fh, path, create ? 0 : position, writebackBytes);
    try {
      if (create) {
        a.position = PACK_MAGIC.length;
        await a.write([PACK_MAGIC]);
      } else if ((await fh.stat()).size > position) {
        // The uncommitted tail of an interrupted append: dropped now, so that `finish` has nothing
        // to do but fdatasync (and nothing stale can outlast this append).
        await fh.truncate(position);
      }
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw fromSystemError(e, `append to pack ${path}`);
    }
    return a;
  }

  get written(): number {
    return this.position - this.start;
  }

  /** Write `buffers` so that they end at `position` (the caller advanced it while laying them out). */
  async write(buffers: Buffer[]): Promise<void> {
    const want = buffers.reduce((n, b) => n + b.length, 0);
    let pos = this.position - want;
    try {
      for (const group of pieces(buffers)) {
        const bytesWritten = await writevAll(this.fh, group, pos);
        pos += bytesWritten;
        this.sinceWriteback += bytesWritten;
      }
    } catch (e) {
      throw fromSystemError(e, `append to pack ${this.path}`);
    }
    if (this.earlyError !== undefined) throw fromSystemError(this.earlyError, `fdatasync pack ${this.path}`);
    if (this.writebackBytes > 0 && this.sinceWriteback >= this.writebackBytes && this.early === undefined) {
      this.sinceWriteback = 0;
      // Its error is kept: Linux reports a writeback error to one fsync per descriptor only.
      this.early = this.fh.datasync().then(
        () => {
          this.early = undefined;
        },
        (e: unknown) => {
          this.earlyError ??= e;
          this.early = undefined;
        },
      );
    }
  }

  /**
   * Make everything written durable; returns the pack's size (`position`). The fdatasync is issued
   * before this returns its promise (alongside a writeback one still in flight, whose error counts
   * too), so the caller can do its own work meanwhile: putStream indexes the checkpoint's rows.
   */
  finish(durable: boolean): Promise<number> {
    const final = durable ? this.fh.datasync() : undefined;
    final?.catch(() => undefined); // awaited below, after the writeback in flight
    return (async () => {
      try {
        await this.early;
        if (this.earlyError !== undefined) throw this.earlyError;
        await final;
        return this.position;
      } catch (e) {
        throw fromSystemError(e, `fdatasync pack ${this.path}`);
      }
    })();
  }

  async close(): Promise<void> {
    await this.early; // never close the handle under an fdatasync in flight (it never rejects)
    await this.fh.close().catch(() => undefined);
  }
}
