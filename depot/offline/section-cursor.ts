import type { FileHandle } from 'node:fs/promises';
import { bad } from '../../src/wire/bundle.js';
import { openBlock, SEAL_LIMITS } from '../../src/wire/bundle-crypto.js';

/**
 * Front-to-back reading of one bundle section's PLAINTEXT, in large reads with bounded memory.
 * `take(n)` returns a view into a reused buffer, valid until the next call; `skip(n)` moves on without
 * using bytes. Positions count from the section's start.
 */
export interface SectionCursor {
  readonly pos: number;
  take(n: number): Promise<Buffer>;
  skip(n: number): void;
}

export async function readAt(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

export interface CursorPlace {
  fh: FileHandle;
  /** Absolute file offset of the section's (stored) bytes. */
  base: number;
  /** Plaintext length of the section. */
  length: number;
  /** For messages: `bundle X: section NAME`. */
  what: string;
  /** Bytes per read. */
  readBytes: number;
}

/** A plain (format version 1) section: the stored bytes are the plaintext. */
export class PlainCursor implements SectionCursor {
  pos = 0;
  private block: Buffer;
  private buf: Buffer;
  private bufStart = 0;

  constructor(private readonly p: CursorPlace) {
    this.block = Buffer.allocUnsafe(Math.min(p.readBytes, Math.max(p.length, 1)));
    this.buf = this.block.subarray(0, 0);
  }

  async take(n: number): Promise<Buffer> {
    const off = this.pos - this.bufStart;
    if (off >= 0 && off + n <= this.buf.length) {
      this.pos += n;
      return this.buf.subarray(off, off + n);
    }
    if (this.pos + n > this.p.length) throw bad(this.p.what, "a record runs past the section's end");
    if (n > this.block.length) this.block = Buffer.allocUnsafe(n); // a record larger than a read (rare)
    const b = this.block.subarray(0, Math.min(this.block.length, this.p.length - this.pos));
    const got = await readAt(this.p.fh, b, this.p.base + this.pos);
    if (got < n) throw bad(this.p.what, `cut short at byte ${this.pos + got}`, 'truncated');
    this.buf = b.subarray(0, got);
    this.bufStart = this.pos;
    this.pos += n;
    return this.buf.subarray(0, n);
  }

  skip(n: number): void {
    if (this.pos + n > this.p.length) throw bad(this.p.what, "a record runs past the section's end");
    this.pos += n;
  }
}

export interface SealKey {
  key: Buffer;
  aad: Buffer;
  blockBytes: number;
  /** The section's index in the table (part of each block's nonce). */
  section: number;
}

/**
 * A sealed (format version 2) section: stored as blocks of `blockBytes` plaintext, each AES-256-GCM
 * encrypted and followed by its tag (src/wire/bundle-crypto.ts). Whole blocks are read, authenticated
 * and decrypted before any byte of them is handed out, one block at a time as `take` needs them (the
 * stored bytes are read ahead in reads of about readBytes); blocks that `skip` passes over entirely are
 * not decrypted. Memory: one read-ahead window plus about two blocks of plaintext.
 */
export class SealedCursor implements SectionCursor {
  pos = 0;
  /** Plaintext of [plainStart, plainStart + plainLen), block-aligned at its end (or the section's end). */
  private plain: Buffer = Buffer.alloc(0);
  private plainStart = 0;
  private plainLen = 0;
  /** Stored (sealed) bytes of blocks [windowFirst, windowLast), read ahead in one call. */
  private stored: Buffer = Buffer.alloc(0);
  private windowFirst = 0;
  private windowLast = 0;
  private readonly blocks: number;
  private readonly storedBlock: number;

  constructor(
    private readonly p: CursorPlace,
    private readonly k: SealKey,
  ) {
    this.blocks = Math.ceil(p.length / k.blockBytes);
    this.storedBlock = k.blockBytes + SEAL_LIMITS.tagBytes;
  }

  async take(n: number): Promise<Buffer> {
    if (this.pos + n > this.p.length) throw bad(this.p.what, "a record runs past the section's end");
    let off = this.pos - this.plainStart;
    if (off < 0 || off + n > this.plainLen) {
      await this.refill(n);
      off = this.pos - this.plainStart;
    }
    this.pos += n;
    return this.plain.subarray(off, off + n);
  }

  skip(n: number): void {
    if (this.pos + n > this.p.length) throw bad(this.p.what, "a record runs past the section's end");
    this.pos += n;
  }

  private async refill(n: number): Promise<void> {
    const B = this.k.blockBytes;
    const end = this.plainStart + this.plainLen;
    // Keep the unread tail of the current plaintext (a record straddling two
    // blocks); else start at pos's block.
    const keep = this.pos >= this.plainStart && this.pos < end ? end - this.pos : 0;
    const start = keep ? this.pos : Math.floor(this.pos / B) * B;
    const first = keep ? end / B : start / B;
    // Decrypt only the blocks this take needs: a damaged block stops the reader before anything after
    // the last good record is handed out (and records before it are used, as with a plain bundle).
    let last = first;
    let bytes = keep;
    while (bytes < this.pos + n - start && last < this.blocks) {
      bytes += Math.min(B, this.p.length - last * B);
      last++;
    }
    if (bytes < this.pos + n - start) throw bad(this.p.what, "a record runs past the section's end");
    let plain = this.plain;
    if (plain.length < bytes) {
      plain = Buffer.allocUnsafe(Math.max(bytes, Math.min(2 * B, this.p.length)));
      if (keep) this.plain.copy(plain, 0, this.pos - this.plainStart, this.plainLen);
    } else if (keep) {
      plain.copyWithin(0, this.pos - this.plainStart, this.plainLen);
    }
    let at = keep;
    for (let b = first; b < last; b++) {
      const clear = openBlock(
        this.k.key,
        this.k.aad,
        this.k.section,
        b,
        await this.sealedBlock(b),
        this.p.what,
      );
      clear.copy(plain, at);
      at += clear.length;
    }
    this.plain = plain;
    this.plainStart = start;
    this.plainLen = bytes;
  }

  /** Block b's stored bytes (ciphertext ‖ tag), from a read-ahead window of about readBytes. */
  private async sealedBlock(b: number): Promise<Buffer> {
    const B = this.k.blockBytes;
    const storedOf = (x: number) =>
      x * this.storedBlock - (x === this.blocks ? this.blocks * B - this.p.length : 0);
    if (b < this.windowFirst || b >= this.windowLast) {
      const last = Math.min(this.blocks, b + Math.max(1, Math.floor(this.p.readBytes / this.storedBlock)));
      const from = storedOf(b);
      const len = storedOf(last) - from;
      if (this.stored.length < len) this.stored = Buffer.allocUnsafe(len);
      const got = await readAt(this.p.fh, this.stored.subarray(0, len), this.p.base + from);
      if (got < len) throw bad(this.p.what, `cut short at stored byte ${from + got}`, 'truncated');
      this.windowFirst = b;
      this.windowLast = last;
    }
    const from = (b - this.windowFirst) * this.storedBlock;
    return this.stored.subarray(from, from + Math.min(B, this.p.length - b * B) + SEAL_LIMITS.tagBytes);
  }
}
