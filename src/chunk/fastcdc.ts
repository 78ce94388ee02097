import { DepotsyncError, fromSystemError } from '../errors.js';
import { gearScan, scanFingerprint } from './gear.js';
import { DEFAULT_READ_BLOCK_BYTES, readBlocks } from './read-blocks.js';
import { resolveChunkerOptions, type ChunkerOptions, type ChunkerParams } from './options.js';

export {
  DEFAULT_CHUNKER_OPTIONS,
  CHUNKER_LIMITS,
  resolveChunkerOptions,
  type ChunkerOptions,
} from './options.js';

/**
 * FastCDC content-defined chunking with normalized chunking (level 2).
 *
 * For each chunk: the first minBytes are skipped (no cut can fall there); from there the gear
 * fingerprint starts at 0 and rolls one byte at a time; below avgBytes a cut needs the wider mask to be
 * all zero, from avgBytes on the narrower one; at maxBytes a cut is forced. The chunk ends with (and
 * includes) the byte whose fingerprint satisfied the mask.
 *
 * `push` is resumable: the fingerprint and position are kept between calls, so every byte is hashed
 * once and the chunks do not depend on how the input was split into reads. Every returned chunk is a
 * fresh copy owned by the caller (the pushed buffer may be reused as soon as `push` returns), except
 * with `ownsInput` (chunkFile), where a chunk inside one read is a view of that read's buffer.
 */
export class Chunker {
  readonly options: Readonly<ChunkerOptions>;
  private readonly p: ChunkerParams;
  /** Bytes of the current chunk seen so far (all of them held in `pending`). */
  private chunkLen = 0;
  private fp = 0;
  private pending: Uint8Array | undefined;
  private readonly ownsInput: boolean;

  /**
   * `ownsInput`: the caller promises never to reuse a pushed buffer (a file stream allocates a new one
   * per read), so a chunk that lies inside one pushed buffer is returned as a view of it instead of a
   * copy. Only chunks that straddle two pushes are copied. Saves a copy of every byte on ingest.
   */
  constructor(opts: Partial<ChunkerOptions> = {}, io: { ownsInput?: boolean } = {}) {
    this.ownsInput = io.ownsInput === true;
    this.p = resolveChunkerOptions(opts);
    this.options = Object.freeze({
      minBytes: this.p.minBytes,
      avgBytes: this.p.avgBytes,
      maxBytes: this.p.maxBytes,
    });
  }

  /** Feed the next bytes; returns the chunks completed by them, in order. */
  push(data: Uint8Array): Uint8Array[] {
    const { minBytes, avgBytes, maxBytes, maskSmall, maskLarge } = this.p;
    const out: Uint8Array[] = [];
    const n = data.length;
    let pos = 0;
    while (pos < n) {
      let i = pos;
      let len = this.chunkLen;
      let fp = this.fp;
      let cut = -1;
      if (len < minBytes) {
        const step = Math.min(minBytes - len, n - i);
        i += step;
        len += step;
      }
      if (len >= minBytes && len < avgBytes && i < n) {
        const end = i + Math.min(avgBytes - len, n - i);
        cut = gearScan(data, i, end, fp, maskSmall);
        fp = scanFingerprint;
        const stop = cut < 0 ? end : cut;
        len += stop - i;
        i = stop;
      }
      if (cut < 0 && len >= avgBytes && i < n) {
        const end = i + Math.min(maxBytes - len, n - i);
        cut = gearScan(data, i, end, fp, maskLarge);
        fp = scanFingerprint;
        const stop = cut < 0 ? end : cut;
        len += stop - i;
        i = stop;
      }
      if (cut < 0 && len === maxBytes) cut = i;
      if (cut < 0) {
        // The input ran out inside a chunk: keep its bytes and the rolling state for the next push.
        this.hold(data, pos, n);
        this.chunkLen = len;
        this.fp = fp;
        return out;
      }
      out.push(this.take(data, pos, cut));
      pos = cut;
    }
    return out;
  }

  /** End of input: returns the last, possibly short, chunk (none for empty input) and resets. */
  finish(): Uint8Array[] {
    if (this.chunkLen === 0) return [];
    const last = Uint8Array.prototype.slice.call(this.pending!, 0, this.chunkLen);
    this.chunkLen = 0;
    this.fp = 0;
    return [last];
  }

  private hold(data: Uint8Array, from: number, to: number): void {
    this.pending ??= new Uint8Array(this.p.maxBytes);
    this.pending.set(data.subarray(from, to), this.chunkLen);
  }

  /** The current chunk: held bytes followed by data[from, to); resets the chunk state. */
  private take(data: Uint8Array, from: number, to: number): Uint8Array {
    const held = this.chunkLen;
    this.chunkLen = 0;
    this.fp = 0;
    if (held === 0 && this.ownsInput) return data.subarray(from, to);
    // Not data.slice(): on a Buffer (what file streams yield) slice() is a view, not a copy.
    // allocUnsafeSlow: every byte is overwritten below, so zero-filling would be wasted work; and never
    // Node's shared pool, so each chunk owns its ArrayBuffer (ingest transfers it to a worker thread).
    const chunk = Buffer.allocUnsafeSlow(held + to - from);
    if (held > 0) chunk.set(this.pending!.subarray(0, held), 0);
    chunk.set(data.subarray(from, to), held);
    return chunk;
  }
}

export interface ChunkRecord {
  /** Byte offset of the chunk in the whole input. */
  offset: number;
  length: number;
  data: Uint8Array;
}

/** Chunks of an async byte source, with offsets. */
export function chunkStream(
  source: AsyncIterable<Uint8Array>,
  opts: Partial<ChunkerOptions> = {},
): AsyncGenerator<ChunkRecord> {
  return chunkWith(new Chunker(opts), source); // options are checked here, before the first read
}

async function* chunkWith(chunker: Chunker, source: AsyncIterable<Uint8Array>): AsyncGenerator<ChunkRecord> {
  let offset = 0;
  for await (const data of source) {
    if (!(data instanceof Uint8Array)) {
      throw new DepotsyncError(
        'bad-input',
        `chunkStream: the source yielded ${typeof data}, expected bytes (Uint8Array)`,
        {
          hint: 'open streams without an encoding so they yield Buffers',
        },
      );
    }
    for (const chunk of chunker.push(data)) {
      yield { offset, length: chunk.length, data: chunk };
      offset += chunk.length;
    }
  }
  for (const chunk of chunker.finish()) {
    yield { offset, length: chunk.length, data: chunk };
    offset += chunk.length;
  }
}

/** Bytes per read of `chunkFile` (reads run ahead of the chunker: read-blocks.ts). */
export const CHUNK_FILE_READ_BYTES = DEFAULT_READ_BLOCK_BYTES;

/** Chunks of a file, read sequentially in 4 MiB reads with one read ahead. Errors name the file. */
export function chunkFile(path: string, opts: Partial<ChunkerOptions> = {}): AsyncGenerator<ChunkRecord> {
  // readBlocks allocates a fresh buffer per read and never reuses it: chunks may be views.
  return chunkFileWith(new Chunker(opts, { ownsInput: true }), path); // options are checked before the file is opened
}

async function* chunkFileWith(chunker: Chunker, path: string): AsyncGenerator<ChunkRecord> {
  try {
    yield* chunkWith(chunker, readBlocks(path, CHUNK_FILE_READ_BYTES));
  } catch (e) {
    throw e instanceof DepotsyncError ? e : fromSystemError(e, `chunking ${path}`);
  }
}
