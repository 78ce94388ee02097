import { parseStrictJson } from '../content/strict-json.js';
import { DepotsyncError } from '../errors.js';
import type { SizedBufferPool } from '../store/buffer-pool.js';
import { ENCODING_CODE, encodingFromCode, type ChunkEncoding } from '../store/encoding.js';

/**
 * The `POST /v1/chunks/batch` wire format (docs/wire-formats.md).
 *
 * Request: JSON `{"ids":["<blake3 hex>", …]}`, with `"encodings":["zstd"]` from a receiver that takes
 * compressed records.
 * Response (`application/vnd.depotsync.chunks`, to a request without encodings): for each requested
 * id, in request order, a record
 *   32 bytes  the chunk id (binary)
 *    4 bytes  big-endian length L, or 0xFFFFFFFF when the server does not have the chunk
 *    L bytes  the chunk
 * Response (`application/vnd.depotsync.chunks.v2`, to a request with encodings): records of
 *   32 bytes  the chunk id (binary)
 *    4 bytes  big-endian length L of the bytes sent, or 0xFFFFFFFF when the server does not have it
 *    1 byte   encoding: 0 plain, 1 zstd (one frame, sent as stored, never recompressed)
 *    4 bytes  big-endian plain length of the chunk
 *    L bytes  the chunk as encoded
 * The receiver checks every id against its request, decodes a compressed record with the plain length
 * its manifest lists as a hard cap, and checks the plain bytes against the id before storing it: the
 * format carries no trust of its own.
 */
export const BATCH_CONTENT_TYPE = 'application/vnd.depotsync.chunks';
export const BATCH_CONTENT_TYPE_V2 = 'application/vnd.depotsync.chunks.v2';
export const MISSING = 0xffffffff;
const HEADER = 36;
const HEADER_V2 = 41;
/** Bytes of one record besides its data, in the larger of the two formats (for response caps). */
export const BATCH_RECORD_OVERHEAD = HEADER_V2;

export interface BatchRequest {
  ids: string[];
  /** The receiver takes zstd records (answer in format 2). */
  zstd: boolean;
}

/** The request body: format 2 asked for with `zstd`. */
export function encodeBatchRequest(ids: readonly string[], zstd: boolean): Buffer {
  return Buffer.from(JSON.stringify(zstd ? { ids, encodings: ['zstd'] } : { ids }));
}

const CHUNK_ID = /^[0-9a-f]{64}$/;

/**
 * Decode a request at the border: strict JSON of at most `maxBytes`, an object with only `ids`, at most
 * `maxIds` chunk ids; every bad id is named (the first five).
 */
export function parseBatchRequest(body: Uint8Array, maxIds: number, maxBytes: number): BatchRequest {
  const what = 'chunk batch request';
  const parsed = parseStrictJson(body, { what, maxBytes });
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new DepotsyncError('bad-input', `${what}: expected {"ids":[…]}`);
  }
  const extra = Object.keys(parsed).filter((k) => k !== 'ids' && k !== 'encodings');
  if (extra.length)
    throw new DepotsyncError('bad-input', `${what}: unknown field ${JSON.stringify(extra[0]?.slice(0, 40))}`);
  const encodings = (parsed as { encodings?: unknown }).encodings;
  if (
    encodings !== undefined &&
    (!Array.isArray(encodings) || encodings.length > 8 || !encodings.every((e) => typeof e === 'string'))
  )
    throw new DepotsyncError('bad-input', `${what}: encodings: expected a short list of names`);
  // Names this server does not know are ignored: the receiver gets what both sides know.
  const zstd = Array.isArray(encodings) && encodings.includes('zstd');
  const ids = (parsed as { ids?: unknown }).ids;
  if (!Array.isArray(ids))
    throw new DepotsyncError('bad-input', `${what}: ids: expected a list of chunk ids`);
  if (ids.length > maxIds)
    throw new DepotsyncError('too-large', `${what}: ids: ${ids.length} ids, limit ${maxIds}`);
  const problems: string[] = [];
  ids.forEach((id: unknown, i) => {
    if (typeof id !== 'string' || !CHUNK_ID.test(id)) {
      problems.push(`ids[${i}] is not a chunk id (64 lower-case hex digits)`);
    }
  });
  if (problems.length) {
    const more = problems.length > 5 ? ` (and ${problems.length - 5} more)` : '';
    throw new DepotsyncError('bad-input', `${what}: ${problems.slice(0, 5).join('; ')}${more}`);
  }
  return { ids: ids as string[], zstd };
}

export function encodeRecordHeader(idHex: string, length: number | undefined): Buffer {
  const h = Buffer.alloc(HEADER);
  h.write(idHex, 0, 32, 'hex');
  h.writeUInt32BE(length === undefined ? MISSING : length, 32);
  return h;
}

/** A format 2 record header: `encoding` and `plainLength` are ignored for a missing chunk. */
export function encodeRecordHeaderV2(
  idHex: string,
  length: number | undefined,
  encoding: ChunkEncoding,
  plainLength: number,
): Buffer {
  const h = Buffer.alloc(HEADER_V2);
  h.write(idHex, 0, 32, 'hex');
  h.writeUInt32BE(length === undefined ? MISSING : length, 32);
  h.writeUInt8(length === undefined ? 0 : ENCODING_CODE[encoding], 36);
  h.writeUInt32BE(length === undefined ? 0 : plainLength, 37);
  return h;
}

export interface BatchRecord {
  id: string;
  /** undefined when the sender does not have the chunk. */
  data: Buffer | undefined;
  /** How `data` is encoded (always 'plain' in format 1). */
  encoding: ChunkEncoding;
  /** The plain length the sender declares (its own length in format 1). */
  plainLength: number;
  /**
   * The pooled block `data` was gathered into (decoder given a pool): give it back once `data` is done with.
   */
  block?: ArrayBuffer;
}

/**
 * Incremental decoder: feed it the response body as it arrives; it yields complete records. Caps each
 * record at `maxChunkBytes` (endless-data attack) and refuses ids that were not asked for, in order.
 */
export class BatchDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private next = 0;
  private readonly header: number;

  constructor(
    private readonly expected: readonly string[],
    private readonly maxChunkBytes: number,
    private readonly what = 'chunk batch',
    /** Where records spanning network pieces are gathered (recycled by the caller), else fresh buffers. */
    private readonly pool?: SizedBufferPool,
    /** Format 1 (plain records) or 2 (encoding and plain length per record): the response's content type. */
    readonly format: 1 | 2 = 1,
  ) {
    this.header = format === 2 ? HEADER_V2 : HEADER;
  }

  push(data: Buffer): BatchRecord[] {
    this.pending.push(data);
    this.pendingBytes += data.length;
    const out: BatchRecord[] = [];
    const HEADER = this.header;
    for (;;) {
      if (this.pendingBytes < HEADER) break;
      const head = this.peek(HEADER);
      const id = head.subarray(0, 32).toString('hex');
      const len = head.readUInt32BE(32);
      const want = this.expected[this.next];
      if (want === undefined) {
        throw new DepotsyncError(
          'bad-input',
          `${this.what}: more records than the ${this.expected.length} requested`,
        );
      }
      if (id !== want) {
        throw new DepotsyncError(
          'bad-input',
          `${this.what}: record ${this.next} is chunk ${id.slice(0, 16)}…, expected ${want.slice(0, 16)}…`,
        );
      }
      if (len === MISSING) {
        this.take(HEADER);
        out.push({ id, data: undefined, encoding: 'plain', plainLength: 0 });
        this.next++;
        continue;
      }
      const encoding =
        this.format === 2 ? encodingFromCode(head[36]!, `${this.what}: record ${this.next}`) : 'plain';
      const plainLength = this.format === 2 ? head.readUInt32BE(37) : len;
      if (len > this.maxChunkBytes || plainLength > this.maxChunkBytes) {
        throw new DepotsyncError(
          'too-large',
          `${this.what}: chunk ${id.slice(0, 16)}… declares ${Math.max(len, plainLength)} bytes, above the limit of ${this.maxChunkBytes}`,
        );
      }
      if (this.pendingBytes < HEADER + len) break;
      this.take(HEADER);
      out.push({ ...this.record(id, len), encoding, plainLength });
      this.next++;
    }
    return out;
  }

  /** Call at end of stream: every requested record must have arrived, with nothing left over. */
  finish(): void {
    if (this.pendingBytes > 0 || this.next < this.expected.length) {
      throw new DepotsyncError(
        'truncated',
        `${this.what}: stream ended after ${this.next} of ${this.expected.length} chunks`,
        {
          hint: 'the connection was cut; the next sync resumes from the chunks already stored',
        },
      );
    }
  }

  get received(): number {
    return this.next;
  }

  private peek(n: number): Buffer {
    if (this.pending[0]!.length >= n) return this.pending[0]!.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    for (let i = 0; at < n; i++) {
      const piece = this.pending[i]!;
      at += piece.copy(out, at, 0, Math.min(piece.length, n - at));
    }
    return out;
  }

  /**
   * A chunk's `len` bytes, all pending. Inside one network piece it is a view of it (no copy: the
   * records of a piece are stored, then dropped, together); spanning pieces it is gathered into a buffer
   * of exactly `len` bytes, a pooled block when the decoder has a pool.
   */
  private record(id: string, len: number): Omit<BatchRecord, 'encoding' | 'plainLength'> {
    if (len === 0 || this.pending[0]!.length >= len || !this.pool) return { id, data: this.take(len) };
    const { buf, block } = this.pool.take(len);
    this.gatherInto(buf);
    return block ? { id, data: buf, block } : { id, data: buf };
  }

  /** The next `n` bytes: a view of the first piece when they lie in it, else gathered into a new buffer. */
  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.pending[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
      this.pendingBytes -= n;
      return out;
    }
    return this.gatherInto(Buffer.allocUnsafe(n));
  }

  /** Move the next `out.length` pending bytes into `out` (they leave the pending pieces). */
  private gatherInto(out: Buffer): Buffer {
    const n = out.length;
    let at = 0;
    let used = 0; // pieces wholly consumed
    while (at < n) {
      const piece = this.pending[used]!;
      const part = Math.min(piece.length, n - at);
      piece.copy(out, at, 0, part);
      at += part;
      if (part < piece.length) {
        this.pending[used] = piece.subarray(part);
        break;
      }
      used++;
    }
    this.pending.splice(0, used);
    this.pendingBytes -= n;
    return out;
  }
}

/**
 * Group chunks into batches of at most `maxBytes` of chunk data and `maxChunks` ids (at least one chunk
 * per batch), in order. Shared by the depot sync and the agent fetch.
 */
export function planBatches<T extends { length: number }>(
  needs: readonly T[],
  maxBytes: number,
  maxChunks: number,
): T[][] {
  const out: T[][] = [];
  let cur: T[] = [];
  let curBytes = 0;
  for (const n of needs) {
    if (cur.length > 0 && (curBytes + n.length > maxBytes || cur.length >= maxChunks)) {
      out.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(n);
    curBytes += n.length;
  }
  if (cur.length) out.push(cur);
  return out;
}
