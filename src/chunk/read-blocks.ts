import { open, type FileHandle } from 'node:fs/promises';
import { intOption } from '../config/validate.js';
import { fromSystemError } from '../errors.js';

/** 4 MiB reads: one chunk in ~55 straddles two reads (and is copied) against one in ~14 at 1 MiB. */
export const DEFAULT_READ_BLOCK_BYTES = 4 * 1024 * 1024;

/**
 * Recycled read blocks. Fresh memory is faulted in page by page, and page faults are dear in this VM
 * (reading into fresh buffers cost ten times the system time: bench/README.md, `ingest`); so whoever
 * knows when a block is no longer needed gives it back, and the next read reuses it. Not bounded: the
 * caller's own back-pressure bounds how many blocks are out at once.
 */
export class BlockPool {
  private readonly free: ArrayBuffer[] = [];

  constructor(readonly blockBytes = DEFAULT_READ_BLOCK_BYTES) {
    intOption('BlockPool', 'blockBytes', blockBytes, 1, 1 << 30);
  }

  take(): Buffer {
    const ab = this.free.pop();
    // allocUnsafeSlow: its own ArrayBuffer, never Node's shared pool (so it can be transferred).
    return ab ? Buffer.from(ab, 0, this.blockBytes) : Buffer.allocUnsafeSlow(this.blockBytes);
  }

  /** Give back a block's memory (its ArrayBuffer, possibly as transferred back from a worker). */
  give(ab: ArrayBuffer): void {
    if (ab.byteLength === this.blockBytes) this.free.push(ab);
  }
}

/**
 * A file's bytes in order, as blocks of `blockBytes` (the last one shorter), with the next read
 * already running on the libuv pool while the caller works on the current block.
 *
 * Without a pool, every block is a fresh Buffer on its own ArrayBuffer, never reused: the caller may
 * keep views of it. With a pool, blocks come from it, and the caller gives each back when done with
 * it. Either way a block's ArrayBuffer is its own (never Node's shared pool): it may be transferred
 * to a worker thread. Errors name the file.
 */
export async function* readBlocks(
  path: string,
  blockBytes = DEFAULT_READ_BLOCK_BYTES,
  pool?: BlockPool,
): AsyncGenerator<Buffer> {
  intOption('readBlocks', 'blockBytes', blockBytes, 1, 1 << 30);
  if (pool && pool.blockBytes !== blockBytes)
    throw new Error(`readBlocks: pool of ${pool.blockBytes}-byte blocks for ${blockBytes}-byte reads`);
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fromSystemError(e, `reading ${path}`);
  }
  let position = 0;
  const readAt = async (pos: number): Promise<Buffer> => {
    const buf = pool ? pool.take() : Buffer.allocUnsafeSlow(blockBytes);
    let got = 0;
    while (got < blockBytes) {
      const { bytesRead } = await fh.read(buf, got, blockBytes - got, pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === blockBytes ? buf : buf.subarray(0, got);
  };
  let pending: Promise<Buffer> | undefined = readAt(0);
  try {
    for (;;) {
      const block: Buffer = await pending;
      pending = undefined;
      if (block.length === 0) return;
      position += block.length;
      // A short block is the end of the file (or the file shrank while read: stop there too).
      if (block.length === blockBytes) pending = readAt(position);
      yield block;
      if (!pending) return;
    }
  } catch (e) {
    throw fromSystemError(e, `reading ${path}`);
  } finally {
    await pending?.catch(() => undefined); // never close the handle under a read in flight
    await fh.close();
  }
}
