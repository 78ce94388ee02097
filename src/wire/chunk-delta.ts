import { MAX_DELTA_BASES } from '../content/delta-pairs.js';
import { parseStrictJson } from '../content/strict-json.js';
import { DepotsyncError } from '../errors.js';

/**
 * The `POST /v1/chunks/delta` wire format: a chunk sent as the difference from a base the receiver
 * already holds: the old chunks (1 to `maxBases`, concatenated in order) that covered the same region
 * of the same file. Several when an edit moved a chunk boundary, so the new chunk spans two old ones.
 * On a 4 KiB edit this moves about 4 KiB instead of the ~64 KiB chunk around it.
 *
 * Request: JSON `{"pairs":[{"bases":["<blake3 hex>", …],"offset":N,"target":"<blake3 hex>"}, …],"zstd":true,
 * "stored":true,"chosen":true}`,
 * at most `CHUNK_DELTA_LIMITS.maxPairs` pairs; `offset` is where in the base the target starts if the
 * edit kept file offsets (0 when the target starts where the first base does). `bases` may instead be
 * the index of an earlier pair with the same bases (neighbouring chunks share their window of the old
 * file). `zstd` (optional): the receiver accepts kind 3 records; `stored` (optional): kind 4 records;
 * `chosen` (optional, only to a sender that announced `CHOSEN_BASES_HEADER`): kind 5 records.
 * Response (`application/vnd.depotsync.chunk-delta`): for each pair, in request order, a record
 *   32 bytes  the target chunk id (binary)
 *    1 byte   kind: 0 the sender does not have the target, 1 the whole target, 2 a delta, 3 a zstd
 *             delta, 4 the whole target as one zstd frame, 5 a zstd delta against bases the sender chose
 *   kind 1:   4 bytes big-endian length L, then L bytes: the chunk
 *   kind 2:   five big-endian 4-byte numbers: prefix length P, prefix position PF, suffix length S,
 *             suffix position SF, middle length M; then M bytes. The target is
 *             base[PF, PF + P) ‖ middle ‖ base[SF, SF + S), where base is the pair's bases concatenated.
 *             The sender tries the base's ends and the in-place position `offset` for each.
 *   kind 3:   4 bytes big-endian length F, then F bytes: one zstd frame of the target with the base as
 *             its raw-content reference (`zstd --patch-from`, src/compress/zstd.ts), content size and
 *             checksum included. Sent only when asked for, and only when smaller than the chunk
 *             compressed alone and than the kind 2 middle. The receiver decodes it with the chunk's
 *             signed length as the hard cap on the output.
 *   kind 4:   4 bytes big-endian length F, then F bytes: one zstd frame of the target alone, as the
 *             sender stores it (src/store/encoding.ts). Sent only when asked for (`stored`) and when
 *             smaller than every other record for the pair; kind 3 must then also beat it. The
 *             receiver decodes it with the chunk's signed length as the hard cap, checks the BLAKE3 of
 *             the plain bytes, and may keep the frame as it came.
 *   kind 5:   2 bytes big-endian count N (1 to `maxBases`), N × 32 bytes: base chunk ids (binary), then
 *             as kind 3: 4 bytes F and one zstd frame, whose reference is these N chunks concatenated
 *             instead of the pair's bases. The sender chose them by content (the old code the target
 *             was built from, wherever it moved; src/deltas/content-bases.ts) among the chunks of the
 *             version the pair's bases come from. The receiver reads them from its own store; one it
 *             does not hold makes the record refused and the chunk fetched whole. Sent only when asked
 *             for (`chosen`) and smaller than every other record for the pair, header included.
 * The sender answers with the whole chunk when it lacks a base or the two share fewer than
 * `minOverlapBytes`. The format carries no trust of its own: the receiver bounds every length before
 * buffering (P, S, M and P + S + M ≤ the largest chunk asked for), checks PF + P and SF + S against its
 * base's length and P + S + M against the length its verified manifest gives, rebuilds, and stores the
 * result only if its BLAKE3 equals the target id.
 */
export const DELTA_CONTENT_TYPE = 'application/vnd.depotsync.chunk-delta';

export const CHUNK_DELTA_LIMITS = {
  /** Pairs in one request. */
  maxPairs: 1024,
  /** Base chunks of one pair. */
  maxBases: MAX_DELTA_BASES,
  /** Request body: `{"bases":["…", ×24],"offset":4294967295,"target":"…"},` is 1716 bytes per pair. */
  maxRequestBytes: 1024 * 1720 + 64,
  /** Common prefix + suffix below which the sender answers with the whole chunk. */
  minOverlapBytes: 64,
  /** Pairs whose chunks the sender reads ahead of the record being written. */
  readAhead: 8,
};

export const DELTA_KIND = { absent: 0, whole: 1, delta: 2, zstd: 3, stored: 4, chosen: 5 } as const;

/**
 * On the read API's timestamp answer: this sender reads `"chosen":true` in delta requests (and may
 * answer kind 5). A receiver asks for kind 5 only after seeing it, so older senders never see the flag.
 */
export const CHOSEN_BASES_HEADER = 'x-depotsync-delta-bases';
export const CHOSEN_BASES = 'chosen';

const ID_BYTES = 32;
const HEAD = ID_BYTES + 1;
const WHOLE_HEAD = HEAD + 4;
const DELTA_HEAD = HEAD + 20;
const CHUNK_ID = /^[0-9a-f]{64}$/;
/** Most bytes a record may add to the chunk it carries: the delta header. */
export const DELTA_RECORD_OVERHEAD = DELTA_HEAD;

export interface DeltaPair {
  /** The old chunks, in file order, whose concatenation is the base. */
  bases: string[];
  /** Where the target starts in the base if the edit kept file offsets. */
  offset: number;
  target: string;
}

/** How a target is made of a base: base[prefixFrom, +prefix) ‖ middle ‖ base[suffixFrom, +suffix). */
export interface DeltaCopy {
  prefix: number;
  prefixFrom: number;
  suffix: number;
  suffixFrom: number;
}

export type DeltaRecord =
  | { target: string; kind: 'absent' }
  | { target: string; kind: 'whole'; data: Buffer }
  | ({ target: string; kind: 'delta'; middle: Buffer } & DeltaCopy)
  | { target: string; kind: 'zstd'; frame: Buffer }
  | { target: string; kind: 'stored'; frame: Buffer }
  | { target: string; kind: 'chosen'; bases: string[]; frame: Buffer };

/** A zstd delta against bases the sender chose (kind 5). */
export interface ChosenFrame {
  bases: string[];
  frame: Buffer;
}

/** A parsed request: the pairs, and whether the receiver accepts zstd deltas, stored frames, chosen bases. */
export interface DeltaRequest {
  pairs: DeltaPair[];
  zstd: boolean;
  stored: boolean;
  chosen: boolean;
}

// ---- request ----------------------------------------------------------------------------------

export function encodeDeltaRequest(
  pairs: readonly DeltaPair[],
  zstd = false,
  stored = false,
  chosen = false,
): Buffer {
  const seen = new Map<string, number>();
  const out = pairs.map((p, i) => {
    const key = p.bases.join(',');
    const earlier = seen.get(key);
    if (earlier === undefined) seen.set(key, i);
    return { bases: earlier ?? p.bases, offset: p.offset, target: p.target };
  });
  // Flags only when set, so a request without them reads as before to older senders.
  return Buffer.from(
    JSON.stringify({
      pairs: out,
      ...(zstd ? { zstd: true } : {}),
      ...(stored ? { stored: true } : {}),
      ...(chosen ? { chosen: true } : {}),
    }),
    'utf8',
  );
}

/**
 * Decode a request at the border: a JSON object with only `pairs`, each pair 1..maxBases base ids, an
 * offset and a target id, nothing else.
 */
export function parseDeltaRequest(body: Buffer, maxPairs = CHUNK_DELTA_LIMITS.maxPairs): DeltaPair[] {
  return parseDeltaRequestWith(body, maxPairs).pairs;
}

/** `parseDeltaRequest`, with the request's `zstd` flag. */
export function parseDeltaRequestWith(body: Buffer, maxPairs = CHUNK_DELTA_LIMITS.maxPairs): DeltaRequest {
  const what = 'chunk delta request';
  const parsed = parseStrictJson(body, { what, maxBytes: CHUNK_DELTA_LIMITS.maxRequestBytes });
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new DepotsyncError('bad-input', `${what}: expected {"pairs":[{"base","target"}, …]}`);
  }
  const flags = ['zstd', 'stored', 'chosen'];
  const extra = Object.keys(parsed).filter((k) => k !== 'pairs' && !flags.includes(k));
  if (extra.length)
    throw new DepotsyncError('bad-input', `${what}: unknown field ${JSON.stringify(extra[0])}`);
  for (const f of flags) {
    const v = (parsed as Record<string, unknown>)[f];
    if (v !== undefined && typeof v !== 'boolean')
      throw new DepotsyncError('bad-input', `${what}: "${f}" is not true or false`);
  }
  const { zstd, stored, chosen } = parsed as { zstd?: boolean; stored?: boolean; chosen?: boolean };
  const pairs = (parsed as { pairs?: unknown }).pairs;
  if (!Array.isArray(pairs))
    throw new DepotsyncError('bad-input', `${what}: expected {"pairs":[{"base","target"}, …]}`);
  if (pairs.length > maxPairs)
    throw new DepotsyncError('too-large', `${what}: ${pairs.length} pairs, limit ${maxPairs}`);
  const problems: string[] = [];
  pairs.forEach((p: unknown, i) => {
    if (typeof p !== 'object' || p === null || Array.isArray(p))
      return void problems.push(`pairs[${i}] is not an object`);
    const o = p as Record<string, unknown>;
    for (const k of Object.keys(o))
      if (k !== 'bases' && k !== 'offset' && k !== 'target')
        problems.push(`pairs[${i}] has unknown field ${JSON.stringify(k.slice(0, 40))}`);
    if (typeof o.target !== 'string' || !CHUNK_ID.test(o.target))
      problems.push(`pairs[${i}].target is not a chunk id (64 lower-case hex digits)`);
    if (typeof o.offset !== 'number' || !Number.isInteger(o.offset) || o.offset < 0 || o.offset > 0xffffffff)
      problems.push(`pairs[${i}].offset is not an integer from 0 to 2^32 − 1`);
    let bases = o.bases;
    if (typeof bases === 'number') {
      // The bases of an earlier pair, already checked.
      if (!Number.isInteger(bases) || bases < 0 || bases >= i)
        return void problems.push(`pairs[${i}].bases is not the index of an earlier pair`);
      bases = o.bases = (pairs[bases] as { bases: unknown }).bases;
    }
    if (!Array.isArray(bases) || bases.length < 1 || bases.length > CHUNK_DELTA_LIMITS.maxBases) {
      problems.push(`pairs[${i}].bases is not a list of 1 to ${CHUNK_DELTA_LIMITS.maxBases} chunk ids`);
    } else {
      bases.forEach((b: unknown, j) => {
        if (typeof b !== 'string' || !CHUNK_ID.test(b))
          problems.push(`pairs[${i}].bases[${j}] is not a chunk id (64 lower-case hex digits)`);
      });
    }
  });
  if (problems.length)
    throw new DepotsyncError(
      'bad-input',
      `${what}: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (and ${problems.length - 5} more)` : ''}`,
    );
  return {
    pairs: pairs as DeltaPair[],
    zstd: zstd === true,
    stored: stored === true,
    chosen: chosen === true,
  };
}

// ---- sender -----------------------------------------------------------------------------------

/** Length of the common prefix of `a` and `b`, stopping at `limit`. */
function commonPrefix(a: Uint8Array, b: Uint8Array, limit: number): number {
  const ab = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const bb = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const BLOCK = 4096;
  let i = 0;
  // Whole blocks through the native comparison first, then byte by byte inside the first differing one.
  while (i + BLOCK <= limit && ab.compare(bb, i, i + BLOCK, i, i + BLOCK) === 0) i += BLOCK;
  while (i < limit && a[i] === b[i]) i++;
  return i;
}

/** Length of the common suffix of `a` and `b`, stopping at `limit`. */
function commonSuffix(a: Uint8Array, b: Uint8Array, limit: number): number {
  const ab = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const bb = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const BLOCK = 4096;
  let n = 0;
  while (
    n + BLOCK <= limit &&
    ab.compare(bb, b.length - n - BLOCK, b.length - n, a.length - n - BLOCK, a.length - n) === 0
  )
    n += BLOCK;
  while (n < limit && a[a.length - 1 - n] === b[b.length - 1 - n]) n++;
  return n;
}

/**
 * The longest prefix and suffix of `target` found in `base` at either end of the base or in place
 * (`offset`: where the target would start in the base if nothing moved). They never overlap in the target.
 */
export function computeDelta(base: Uint8Array, target: Uint8Array, offset = 0): DeltaCopy {
  let best = { prefix: 0, prefixFrom: 0 };
  for (const from of new Set([0, offset])) {
    if (from >= base.length) continue;
    const rest = base.subarray(from);
    const n = commonPrefix(rest, target, Math.min(rest.length, target.length));
    if (n > best.prefix) best = { prefix: n, prefixFrom: from };
  }
  const left = target.length - best.prefix;
  let suffix = 0;
  let suffixFrom = 0;
  for (const end of new Set([base.length, offset + target.length])) {
    if (end > base.length || end <= 0) continue;
    const head = base.subarray(0, end);
    const n = commonSuffix(head, target, Math.min(head.length, left));
    if (n > suffix) [suffix, suffixFrom] = [n, end - n];
  }
  return { ...best, suffix, suffixFrom };
}

/**
 * The record answering one pair, as buffers to write in order (the chunk bytes are not copied).
 * `target` undefined: the sender lacks it; `base` undefined: it lacks the base (whole chunk).
 * `frame`: a zstd delta of the target against the base (kind 3); `stored`: the target's own zstd
 * frame (kind 4). The smallest record wins; ties go to the simpler kind.
 */
export function encodeDeltaRecord(
  targetId: string,
  target: Buffer | undefined,
  base: Buffer | undefined,
  offset = 0,
  minOverlapBytes = CHUNK_DELTA_LIMITS.minOverlapBytes,
  frame?: Buffer,
  stored?: Buffer,
  chosen?: ChosenFrame,
): Buffer[] {
  if (!target) {
    const h = Buffer.alloc(HEAD);
    h.write(targetId, 0, ID_BYTES, 'hex');
    h[ID_BYTES] = DELTA_KIND.absent;
    return [h];
  }
  const d = base ? computeDelta(base, target, offset) : undefined;
  const middle = d ? target.length - d.prefix - d.suffix : target.length;
  const byteDelta = d && d.prefix + d.suffix >= minOverlapBytes ? middle + DELTA_HEAD - WHOLE_HEAD : Infinity;
  const cheapest = Math.min(target.length, byteDelta);
  if (
    chosen &&
    chosen.bases.length >= 1 &&
    chosen.bases.length <= CHUNK_DELTA_LIMITS.maxBases &&
    chosen.frame.length + 2 + ID_BYTES * chosen.bases.length <
      Math.min(
        cheapest,
        stored?.length ?? Infinity,
        frame && frame.length < target.length ? frame.length : Infinity,
      )
  ) {
    const h = Buffer.alloc(HEAD + 2 + ID_BYTES * chosen.bases.length + 4);
    h.write(targetId, 0, ID_BYTES, 'hex');
    h[ID_BYTES] = DELTA_KIND.chosen;
    h.writeUInt16BE(chosen.bases.length, HEAD);
    chosen.bases.forEach((b, i) => h.write(b, HEAD + 2 + ID_BYTES * i, ID_BYTES, 'hex'));
    h.writeUInt32BE(chosen.frame.length, h.length - 4);
    return [h, chosen.frame];
  }
  if (stored && stored.length < cheapest && (!frame || stored.length <= frame.length)) {
    const h = Buffer.alloc(WHOLE_HEAD);
    h.write(targetId, 0, ID_BYTES, 'hex');
    h[ID_BYTES] = DELTA_KIND.stored;
    h.writeUInt32BE(stored.length, HEAD);
    return [h, stored];
  }
  if (frame && frame.length < target.length && (!d || frame.length < middle)) {
    const h = Buffer.alloc(WHOLE_HEAD);
    h.write(targetId, 0, ID_BYTES, 'hex');
    h[ID_BYTES] = DELTA_KIND.zstd;
    h.writeUInt32BE(frame.length, HEAD);
    return [h, frame];
  }
  if (!d || d.prefix + d.suffix < minOverlapBytes) {
    const h = Buffer.alloc(WHOLE_HEAD);
    h.write(targetId, 0, ID_BYTES, 'hex');
    h[ID_BYTES] = DELTA_KIND.whole;
    h.writeUInt32BE(target.length, HEAD);
    return [h, target];
  }
  const h = Buffer.alloc(DELTA_HEAD);
  h.write(targetId, 0, ID_BYTES, 'hex');
  h[ID_BYTES] = DELTA_KIND.delta;
  h.writeUInt32BE(d.prefix, HEAD);
  h.writeUInt32BE(d.prefixFrom, HEAD + 4);
  h.writeUInt32BE(d.suffix, HEAD + 8);
  h.writeUInt32BE(d.suffixFrom, HEAD + 12);
  h.writeUInt32BE(target.length - d.prefix - d.suffix, HEAD + 16);
  return [h, target.subarray(d.prefix, target.length - d.suffix)];
}

/**
 * The records answering `pairs`, in order, each one Buffer; chunks are loaded `readAhead` pairs ahead
 * so the disk and the writer overlap. `load` resolves undefined for a chunk the sender does not have
 * (or cannot read intact).
 */
export async function* deltaRecords(
  pairs: readonly DeltaPair[],
  load: (id: string) => Promise<Buffer | undefined>,
  opts: {
    minOverlapBytes?: number;
    readAhead?: number;
    /** A zstd frame of the target against the base (kind 3), when the receiver accepts them. */
    zstd?: (pair: DeltaPair, target: Buffer, base: Buffer) => Promise<Buffer | undefined>;
    /** The target's stored zstd frame, if it has one (kind 4), when the receiver accepts them. */
    stored?: (id: string) => Promise<Buffer | undefined>;
    /** A zstd frame against bases chosen by content (kind 5), when the receiver accepts them. */
    chosen?: (pair: DeltaPair) => Promise<ChosenFrame | undefined>;
  } = {},
): AsyncGenerator<{ record: Buffer; payloadBytes: number }> {
  const ahead = opts.readAhead ?? CHUNK_DELTA_LIMITS.readAhead;
  type Loaded = [
    Buffer | undefined,
    Buffer | undefined,
    Buffer | undefined,
    Buffer | undefined,
    ChosenFrame | undefined,
  ];
  const inflight: Array<Promise<Loaded>> = [];
  let next = 0;
  const fill = () => {
    while (inflight.length < ahead && next < pairs.length) {
      const p = pairs[next++]!;
      // The base matters only when the target is there; all of it, or the target goes whole.
      inflight.push(
        load(p.target).then(async (t): Promise<Loaded> => {
          if (!t) return [undefined, undefined, undefined, undefined, undefined];
          const own = opts.stored ? opts.stored(p.target).catch(() => undefined) : undefined;
          const chosen = opts.chosen ? opts.chosen(p).catch(() => undefined) : undefined;
          const parts = await Promise.all(p.bases.map(load));
          const base = parts.every((b) => b !== undefined)
            ? parts.length === 1
              ? parts[0]
              : Buffer.concat(parts)
            : undefined;
          // A delta against chosen bases is the better one: no second delta is computed for the pair.
          const picked = await chosen;
          const frame =
            base && opts.zstd && !picked ? await opts.zstd(p, t, base).catch(() => undefined) : undefined;
          return [t, base, frame, await own, picked];
        }),
      );
    }
  };
  fill();
  for (const p of pairs) {
    const [target, base, frame, stored, chosen] = await inflight.shift()!;
    fill();
    const parts = encodeDeltaRecord(
      p.target,
      target,
      base,
      p.offset,
      opts.minOverlapBytes,
      frame,
      stored,
      chosen,
    );
    const payloadBytes = parts.length > 1 ? parts[parts.length - 1]!.length : 0;
    yield { record: parts.length === 1 ? parts[0]! : Buffer.concat(parts), payloadBytes };
  }
}

// ---- receiver ---------------------------------------------------------------------------------

/**
 * Incremental decoder: feed it the response body as it arrives; it yields complete records. Refuses
 * records for ids not asked for (in order), unknown kinds, and any length that could make it buffer
 * more than `maxChunkBytes` for one record (endless-data attack): prefix, suffix and middle each, and
 * their sum, must fit a chunk.
 */
export class DeltaDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private next = 0;

  constructor(
    private readonly expected: readonly string[],
    private readonly maxChunkBytes: number,
    private readonly what = 'chunk delta response',
  ) {}

  push(data: Buffer): DeltaRecord[] {
    if (data.length) {
      this.pending.push(data);
      this.pendingBytes += data.length;
    }
    const out: DeltaRecord[] = [];
    for (;;) {
      if (this.pendingBytes < HEAD) break;
      const head = this.peek(Math.min(this.pendingBytes, DELTA_HEAD));
      const id = head.subarray(0, ID_BYTES).toString('hex');
      const kind = head[ID_BYTES]!;
      const want = this.expected[this.next];
      if (want === undefined)
        throw new DepotsyncError(
          'bad-input',
          `${this.what}: more records than the ${this.expected.length} pairs requested`,
        );
      if (id !== want)
        throw new DepotsyncError(
          'bad-input',
          `${this.what}: record ${this.next} is chunk ${id.slice(0, 16)}…, expected ${want.slice(0, 16)}…`,
        );
      if (kind === DELTA_KIND.absent) {
        this.take(HEAD);
        out.push({ target: id, kind: 'absent' });
      } else if (kind === DELTA_KIND.whole) {
        if (head.length < WHOLE_HEAD) break;
        const len = head.readUInt32BE(HEAD);
        this.bound(id, 'length', len);
        if (this.pendingBytes < WHOLE_HEAD + len) break;
        this.take(WHOLE_HEAD);
        out.push({ target: id, kind: 'whole', data: this.take(len) });
      } else if (kind === DELTA_KIND.zstd || kind === DELTA_KIND.stored) {
        if (head.length < WHOLE_HEAD) break;
        const len = head.readUInt32BE(HEAD);
        // A frame is never larger than its chunk: the sender sends the chunk instead.
        this.bound(id, 'frame length', len);
        if (this.pendingBytes < WHOLE_HEAD + len) break;
        this.take(WHOLE_HEAD);
        const frame = this.take(len);
        out.push({ target: id, kind: kind === DELTA_KIND.zstd ? 'zstd' : 'stored', frame });
      } else if (kind === DELTA_KIND.chosen) {
        if (this.pendingBytes < HEAD + 2) break;
        const n = this.peek(HEAD + 2).readUInt16BE(HEAD);
        if (n < 1 || n > CHUNK_DELTA_LIMITS.maxBases)
          throw new DepotsyncError(
            'bad-input',
            `${this.what}: record ${this.next} (chunk ${id.slice(0, 16)}…) names ${n} bases, not 1 to ${CHUNK_DELTA_LIMITS.maxBases}`,
          );
        const fixed = HEAD + 2 + ID_BYTES * n + 4;
        if (this.pendingBytes < fixed) break;
        const len = this.peek(fixed).readUInt32BE(fixed - 4);
        this.bound(id, 'frame length', len);
        if (this.pendingBytes < fixed + len) break;
        const h = this.take(fixed);
        const bases = Array.from({ length: n }, (_, i) =>
          h.subarray(HEAD + 2 + ID_BYTES * i, HEAD + 2 + ID_BYTES * (i + 1)).toString('hex'),
        );
        out.push({ target: id, kind: 'chosen', bases, frame: this.take(len) });
      } else if (kind === DELTA_KIND.delta) {
        if (head.length < DELTA_HEAD) break;
        const prefix = head.readUInt32BE(HEAD);
        const prefixFrom = head.readUInt32BE(HEAD + 4);
        const suffix = head.readUInt32BE(HEAD + 8);
        const suffixFrom = head.readUInt32BE(HEAD + 12);
        const mid = head.readUInt32BE(HEAD + 16);
        this.bound(id, 'prefix', prefix);
        this.bound(id, 'suffix', suffix);
        this.bound(id, 'middle length', mid);
        this.bound(id, 'prefix + suffix + middle', prefix + suffix + mid);
        if (this.pendingBytes < DELTA_HEAD + mid) break;
        this.take(DELTA_HEAD);
        out.push({
          target: id,
          kind: 'delta',
          prefix,
          prefixFrom,
          suffix,
          suffixFrom,
          middle: this.take(mid),
        });
      } else {
        throw new DepotsyncError(
          'bad-input',
          `${this.what}: record ${this.next} (chunk ${id.slice(0, 16)}…) has unknown kind ${kind}`,
        );
      }
      this.next++;
    }
    return out;
  }

  /** Call at end of stream: every requested record must have arrived, with nothing left over. */
  finish(): void {
    if (this.pendingBytes > 0 || this.next < this.expected.length) {
      throw new DepotsyncError(
        'truncated',
        `${this.what}: stream ended after ${this.next} of ${this.expected.length} records`,
        {
          hint: 'the connection was cut; the chunks not received are fetched whole',
        },
      );
    }
  }

  private bound(id: string, field: string, n: number): void {
    if (n > this.maxChunkBytes) {
      throw new DepotsyncError(
        'too-large',
        `${this.what}: chunk ${id.slice(0, 16)}… declares ${field} ${n}, above the limit of ${this.maxChunkBytes} bytes`,
      );
    }
  }

  private peek(n: number): Buffer {
    if (this.pending[0]!.length >= n) return this.pending[0]!.subarray(0, n);
    const all = Buffer.concat(this.pending);
    this.pending = [all];
    return all.subarray(0, n);
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.pending[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
      this.pendingBytes -= n;
      // Copy so the record does not pin a large network buffer.
      return Buffer.from(out);
    }
    const all = Buffer.concat(this.pending);
    const out = Buffer.from(all.subarray(0, n));
    this.pending = all.length > n ? [all.subarray(n)] : [];
    this.pendingBytes -= n;
    return out;
  }
}

/**
 * Rebuild a target chunk from its delta record and the receiver's base. Returns the bytes, or the
 * reason the record cannot describe a chunk of `expectedLength` from this base (the caller then fetches
 * the chunk whole). The result still has to be hashed against the target id before it is stored.
 */
export function rebuildChunk(
  base: Uint8Array,
  rec: Extract<DeltaRecord, { kind: 'delta' }>,
  expectedLength: number,
): Buffer | string {
  const { prefix, prefixFrom, suffix, suffixFrom, middle } = rec;
  if (prefixFrom + prefix > base.length)
    return `prefix ${prefixFrom}+${prefix} reaches past the base's ${base.length} bytes`;
  if (suffixFrom + suffix > base.length)
    return `suffix ${suffixFrom}+${suffix} reaches past the base's ${base.length} bytes`;
  if (prefix + suffix + middle.length !== expectedLength) {
    return `prefix ${prefix} + suffix ${suffix} + middle ${middle.length} is not the chunk's length ${expectedLength}`;
  }
  const out = Buffer.allocUnsafe(expectedLength);
  out.set(base.subarray(prefixFrom, prefixFrom + prefix), 0);
  out.set(middle, prefix);
  out.set(base.subarray(suffixFrom, suffixFrom + suffix), prefix + middle.length);
  return out;
}

// ---- offline bundles --------------------------------------------------------------------------

/**
 * A bundle's `chunk-deltas` section (master export → depot import): the chunks of the new generation
 * that replace chunks of the depot's generation A, as deltas against them. Both sides compute the same
 * pair list from the manifests (src/content/delta-pairs.ts: A's versions against the new ones, pairs
 * ordered by target id), so no pair is written down:
 *   u32 BE    N, the number of pairs (the importer refuses the section if it computed another number)
 *   ⌈N/8⌉     bitmap, bit i (LSB first) set: pair i's record follows; clear: that chunk is in a chunk section
 *   records   for the set pairs, in order, in the `POST /v1/chunks/delta` response format above
 * The section's SHA-256 is in the signed table of contents, and every rebuilt chunk is hashed against
 * its id like any other.
 */
export const DELTA_SECTION = 'chunk-deltas';

export function encodeDeltaSection(
  pairCount: number,
  included: ReadonlySet<number>,
  records: readonly Buffer[],
): Buffer {
  const head = Buffer.alloc(4 + Math.ceil(pairCount / 8));
  head.writeUInt32BE(pairCount, 0);
  for (const i of included) head[4 + (i >> 3)]! |= 1 << (i & 7);
  return Buffer.concat([head, ...records]);
}

/** The pair count, which pairs have a record, and the records' bytes; checked against `expectedPairs`. */
export function decodeDeltaSection(
  bytes: Buffer,
  expectedPairs: number,
  what: string,
): { included: number[]; records: Buffer } {
  if (bytes.length < 4)
    throw new DepotsyncError('bad-input', `${what}: ${bytes.length} bytes, too short for a pair count`);
  const n = bytes.readUInt32BE(0);
  if (n !== expectedPairs) {
    throw new DepotsyncError(
      'bad-input',
      `${what}: made for ${n} chunk pairs, this depot pairs ${expectedPairs} from its served generation`,
      {
        hint: 'the bundle was exported for another base generation; export it again with --from set to the generation this depot serves',
      },
    );
  }
  const mapBytes = Math.ceil(n / 8);
  if (bytes.length < 4 + mapBytes)
    throw new DepotsyncError('bad-input', `${what}: the pair bitmap is cut short`);
  const included: number[] = [];
  for (let i = 0; i < n; i++) if (bytes[4 + (i >> 3)]! & (1 << (i & 7))) included.push(i);
  return { included, records: bytes.subarray(4 + mapBytes) };
}
