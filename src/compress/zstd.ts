import { constants as bufferConstants } from 'node:buffer';
import { createRequire } from 'node:module';
import { DepotsyncError } from '../errors.js';
import { setZstdDecoder, type DecodeOptions } from './decoder-registry.js';

/**
 * Zstandard through the native `zstd-napi` addon (its bundled libzstd, built at install): plain
 * compression of chunks and files, and deltas that use an older version of the same content as the
 * reference (the same frames as `zstd --patch-from=BASE`: the base is a raw-content dictionary, with
 * long-distance matching and a window that spans base and target). The choice of codec and levels is
 * measured in bench/README.md ("Real-world deltas").
 *
 * Decompression never trusts the frame: the caller's `maxBytes` (the length its signed manifest
 * declares) caps the output buffer and the decoder's window, so a frame that claims, or produces, more
 * is refused with a typed error before anything larger is allocated. Frames carry zstd's content
 * checksum, so a wrong base or a corrupted delta fails here rather than later at the hash check
 * (callers still verify every output by its hash).
 */

interface StreamResult extends Array<number> {
  0: number;
  1: number;
  2: number;
}
interface CCtx {
  setParameter(param: number, value: number): void;
  reset(directive: number): void;
  compress2(dst: Uint8Array, src: Uint8Array): number;
  loadDictionary(dict: Uint8Array): void;
}
interface DCtx {
  setParameter(param: number, value: number): void;
  reset(directive: number): void;
  decompressStream(dst: Uint8Array, src: Uint8Array): StreamResult;
  loadDictionary(dict: Uint8Array): void;
}
interface Binding {
  CCtx: new () => CCtx;
  DCtx: new () => DCtx;
  CParameter: Record<
    'compressionLevel' | 'windowLog' | 'enableLongDistanceMatching' | 'checksumFlag' | 'contentSizeFlag',
    number
  >;
  DParameter: Record<'windowLogMax', number>;
  ResetDirective: Record<'sessionOnly' | 'parameters' | 'sessionAndParameters', number>;
  compressBound(size: number): number;
  getFrameContentSize(frame: Uint8Array): number | null;
  versionString(): string;
  minCLevel(): number;
  maxCLevel(): number;
}

export const ZSTD_PACKAGE = 'zstd-napi';
/** Levels callers may ask for (zstd's own range is wider). */
export const MIN_LEVEL = 1;
/**
 * `compress` also takes zstd's fast (negative) levels down to this one: several times the speed of level 1
 * for a worse ratio, for chunks compressed on the publish path (bench/README.md, "Compressed chunks").
 * Deltas keep the 1..19 range.
 */
export const MIN_FAST_LEVEL = -7;
export const MAX_LEVEL = 19;
export const DEFAULT_LEVEL = 3;

const FRAME_MAGIC = 0xfd2fb528;
/** A buffer that starts with this is parsed by libzstd as a trained dictionary, not as raw content. */
const DICTIONARY_MAGIC = 0xec30a437;
const WINDOW_LOG_MIN = 10;
/**
 * `ZSTD_c_forceAttachDict` = `ZSTD_dictForceLoad`: load the base into the match state with the frame's
 * own parameters (long-distance matching included), which is what `ZSTD_CCtx_refPrefix` and so
 * `zstd --patch-from` do. An experimental libzstd parameter that `zstd-napi` passes through by number;
 * the self-check at load proves it is accepted and that a delta uses its base.
 */
const FORCE_ATTACH_DICT_PARAM = 1001;
const DICT_FORCE_LOAD = 3;
/** libzstd's limit on 64-bit hosts; a delta whose base and target exceed 2 GiB reaches only the last 2 GiB. */
const WINDOW_LOG_MAX = 31;
/**
 * The decoder's window limit is never set below this: a frame without a content size (the zstd tool
 * writing to a pipe) has the window of its level, 8 MiB up to level 19, and the decoder allocates it
 * whatever the output's length. Frames with a content size (all of ours) need only that much.
 */
const DECODER_WINDOW_LOG_FLOOR = 23;

/** `printf 'depotsync: zstd self-check vector, 0123456789 0123456789 0123456789' | zstd -19 --no-check`. */
const VECTOR_PLAIN = 'depotsync: zstd self-check vector, 0123456789 0123456789 0123456789';
const VECTOR_FRAME = Buffer.from(
  '28b52ffd0068a50100d4026465706f7473796e633a207a7374642073656c662d636865636b20766563746f722c2030313233' +
    '34353637383901' +
    '00b552ca',
  'hex',
);

function load(): { binding: Binding; cctx: CCtx; dctx: DCtx; version: string } {
  let binding: Binding;
  try {
    binding = createRequire(import.meta.url)(`${ZSTD_PACKAGE}/binding`) as Binding;
  } catch (e) {
    throw new DepotsyncError(
      'internal',
      `zstd: the native module ${ZSTD_PACKAGE} could not be loaded: ${(e as Error).message}`,
      {
        hint: 'run `npm install` (it builds the addon: needs python3, make and g++) or `npm rebuild zstd-napi`',
        cause: e,
      },
    );
  }
  const version = binding.versionString();
  try {
    const cctx = new binding.CCtx();
    const dctx = new binding.DCtx();
    // A frame made by the reference zstd tool must decode, and our own compression must round-trip.
    const known = boundedDecompress(binding, dctx, VECTOR_FRAME, VECTOR_PLAIN.length, undefined);
    if (known.toString('latin1') !== VECTOR_PLAIN)
      throw new Error('the reference frame decoded to other bytes');
    const plain = Buffer.from(VECTOR_PLAIN.repeat(50));
    const frame = compressWith(binding, cctx, plain, DEFAULT_LEVEL, undefined);
    if (frame.length >= plain.length) throw new Error(`compression did not compress (${frame.length} bytes)`);
    if (!boundedDecompress(binding, dctx, frame, plain.length, undefined).equals(plain))
      throw new Error('round trip differs');
    // A delta against a base it shares all but a few bytes with must be tiny, and rebuild the target.
    const base = Buffer.alloc(256 * 1024);
    for (let i = 0, x = 1; i < base.length; i++) base[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
    const target = Buffer.concat([base.subarray(0, 1000), plain.subarray(0, 16), base.subarray(1000)]);
    const d = compressWith(binding, cctx, target, DEFAULT_LEVEL, base);
    if (d.length > 512)
      throw new Error(`a delta against its base took ${d.length} bytes: the base was not used`);
    if (!boundedDecompress(binding, dctx, d, target.length, base).equals(target))
      throw new Error('delta round trip differs');
    return { binding, cctx, dctx, version };
  } catch (e) {
    throw new DepotsyncError(
      'internal',
      `zstd: the native module ${ZSTD_PACKAGE} (libzstd ${version}) failed its self-check: ${(e as Error).message}`,
      {
        hint: 'reinstall it: `npm rebuild zstd-napi`',
        cause: e,
      },
    );
  }
}

function windowLogFor(bytes: number): number {
  return Math.min(WINDOW_LOG_MAX, Math.max(WINDOW_LOG_MIN, Math.ceil(Math.log2(Math.max(1, bytes)))));
}

function startsWithDictionaryMagic(base: Uint8Array): boolean {
  return (
    base.length >= 4 && Buffer.from(base.buffer, base.byteOffset, 4).readUInt32LE(0) === DICTIONARY_MAGIC
  );
}

function checkLevel(level: number, min = MIN_LEVEL): void {
  if (!Number.isInteger(level) || level < min || level > MAX_LEVEL || level === 0) {
    throw new DepotsyncError(
      'bad-input',
      `zstd: level must be a non-zero integer from ${min} to ${MAX_LEVEL}, got ${level}`,
    );
  }
}

function checkMaxBytes(maxBytes: number, what: string): void {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0 || maxBytes >= bufferConstants.MAX_LENGTH) {
    throw new DepotsyncError(
      'bad-input',
      `${what}: maxBytes must be a whole number of bytes below ${bufferConstants.MAX_LENGTH}, got ${maxBytes}`,
    );
  }
}

/** One frame of `plain`, with content size and checksum; against `base` as a raw-content reference when given. */
function compressWith(
  binding: Binding,
  cctx: CCtx,
  plain: Uint8Array,
  level: number,
  base: Uint8Array | undefined,
): Buffer {
  const P = binding.CParameter;
  cctx.reset(binding.ResetDirective.sessionAndParameters);
  cctx.setParameter(P.compressionLevel, level);
  cctx.setParameter(P.checksumFlag, 1);
  cctx.setParameter(P.contentSizeFlag, 1);
  const withBase = base !== undefined && base.length > 0 && !startsWithDictionaryMagic(base);
  if (withBase) {
    // What `zstd --patch-from` sets: a window over base and target, and long-distance matching, which
    // finds the base's moved blocks however far they went.
    cctx.setParameter(P.windowLog, windowLogFor(base.length + plain.length));
    cctx.setParameter(P.enableLongDistanceMatching, 1);
    // Without this, a base of similar size to the target is used as a prebuilt dictionary with its own
    // small tables and no long-distance matching: at level 3 the delta of an esbuild release came out
    // as large as plain compression (4.7 MB); with the base loaded as history, 1.5 MB.
    cctx.setParameter(FORCE_ATTACH_DICT_PARAM, DICT_FORCE_LOAD);
    cctx.loadDictionary(base);
  }
  try {
    const dst = Buffer.allocUnsafe(binding.compressBound(plain.length));
    const n = cctx.compress2(dst, plain);
    // A copy of the right size: the bound can be much larger than the frame.
    return Buffer.from(dst.subarray(0, n));
  } finally {
    // Drop the reference to the base (libzstd holds a copy until the next load).
    if (withBase) cctx.reset(binding.ResetDirective.sessionAndParameters);
  }
}

function zstdError(e: unknown, what: string): DepotsyncError {
  const message = (e as Error)?.message ?? String(e);
  if (/too much memory|window/i.test(message)) {
    return new DepotsyncError(
      'too-large',
      `${what}: the frame needs a larger window than its declared size allows (${message})`,
      { cause: e },
    );
  }
  return new DepotsyncError('corrupt', `${what}: ${message}`, {
    hint: 'fetch the content again; the source may be damaged',
    cause: e,
  });
}

/**
 * Decode exactly one frame of at most `maxBytes` bytes. The output buffer is `maxBytes + 1` long: the
 * decoder can never write more, and one byte past the cap proves the frame is longer than declared.
 */
function boundedDecompress(
  binding: Binding,
  dctx: DCtx,
  frame: Uint8Array,
  maxBytes: number,
  base: Uint8Array | undefined,
  what = 'zstd',
): Buffer {
  if (frame.length < 4 || Buffer.from(frame.buffer, frame.byteOffset, 4).readUInt32LE(0) !== FRAME_MAGIC) {
    throw new DepotsyncError(
      'corrupt',
      `${what}: not a zstd frame (${frame.length < 4 ? 'shorter than its magic number' : 'wrong magic number'})`,
    );
  }
  let declared: number | null;
  try {
    declared = binding.getFrameContentSize(frame);
  } catch (e) {
    // A header cut short reads as an error here too.
    throw new DepotsyncError(
      frame.length < 18 ? 'truncated' : 'corrupt',
      `${what}: unreadable frame header`,
      { cause: e },
    );
  }
  if (declared !== null && declared > maxBytes) {
    throw new DepotsyncError(
      'too-large',
      `${what}: the frame declares ${declared} bytes, more than the ${maxBytes} expected`,
      {
        hint: 'the content does not match its signed size; it is refused before decoding',
      },
    );
  }
  const withBase = base !== undefined && base.length > 0 && !startsWithDictionaryMagic(base);
  dctx.reset(binding.ResetDirective.sessionAndParameters);
  const needed = windowLogFor((withBase ? base.length : 0) + maxBytes) + 1;
  dctx.setParameter(
    binding.DParameter.windowLogMax,
    Math.min(WINDOW_LOG_MAX, Math.max(DECODER_WINDOW_LOG_FLOOR, needed)),
  );
  if (withBase) dctx.loadDictionary(base);
  const out = Buffer.allocUnsafe(maxBytes + 1);
  let produced = 0;
  let consumed = 0;
  try {
    for (;;) {
      let r: StreamResult;
      try {
        r = dctx.decompressStream(out.subarray(produced), frame.subarray(consumed));
      } catch (e) {
        throw zstdError(e, what);
      }
      const [left, p, c] = r;
      produced += p;
      consumed += c;
      if (produced > maxBytes) {
        throw new DepotsyncError(
          'too-large',
          `${what}: the frame decodes to more than the ${maxBytes} bytes expected`,
          {
            hint: 'the content does not match its signed size; decoding stopped at the limit',
          },
        );
      }
      if (left === 0) break;
      if (consumed >= frame.length || (p === 0 && c === 0)) {
        throw new DepotsyncError(
          'truncated',
          `${what}: the frame ends early (${frame.length} bytes, ${produced} decoded)`,
          {
            hint: 'fetch the content again',
          },
        );
      }
    }
  } finally {
    if (withBase) dctx.reset(binding.ResetDirective.sessionAndParameters);
  }
  if (consumed !== frame.length) {
    throw new DepotsyncError('corrupt', `${what}: ${frame.length - consumed} bytes follow the frame`);
  }
  return out.subarray(0, produced);
}

const zstd = load();

/** The libzstd version the addon was built with (for reports and benchmarks). */
export const ZSTD_VERSION: string = zstd.version;

/** One zstd frame of `plain` (content size and checksum included); `level` may be a fast (negative) one. */
export function compress(plain: Uint8Array, level: number = DEFAULT_LEVEL): Buffer {
  checkLevel(level, MIN_FAST_LEVEL);
  return compressWith(zstd.binding, zstd.cctx, plain, level, undefined);
}

export type { DecodeOptions } from './decoder-registry.js';

function finish(out: Buffer, opts: DecodeOptions, what: string): Buffer {
  if (opts.exact && out.length !== opts.maxBytes) {
    throw new DepotsyncError('corrupt', `${what}: decoded ${out.length} bytes, expected ${opts.maxBytes}`);
  }
  return out;
}

/**
 * Decode one frame made by `compress`. Refuses (typed errors) a frame that declares or produces more
 * than `maxBytes` (too-large), ends early (truncated), or is damaged or checksum-mismatched (corrupt).
 */
export function decompress(bytes: Uint8Array, opts: DecodeOptions): Buffer {
  checkMaxBytes(opts.maxBytes, 'zstd decompress');
  return finish(
    boundedDecompress(zstd.binding, zstd.dctx, bytes, opts.maxBytes, undefined, 'zstd decompress'),
    opts,
    'zstd decompress',
  );
}

/**
 * `target` encoded against `base` (an older version of the same content), as `zstd --patch-from`
 * would. A base that libzstd would read as a trained dictionary (it starts with the dictionary magic
 * number) is not used: the frame is then plain compression, and `applyDelta` knows to do the same.
 */
export function delta(base: Uint8Array, target: Uint8Array, level: number = DEFAULT_LEVEL): Buffer {
  checkLevel(level);
  return compressWith(zstd.binding, zstd.cctx, target, level, base);
}

/**
 * Rebuild the target of `delta(base, target)`. Against another base the frame's checksum fails
 * (corrupt) or the frame reaches outside the base (corrupt); callers verify the output by hash anyway.
 */
export function applyDelta(base: Uint8Array, deltaBytes: Uint8Array, opts: DecodeOptions): Buffer {
  checkMaxBytes(opts.maxBytes, 'zstd delta');
  return finish(
    boundedDecompress(zstd.binding, zstd.dctx, deltaBytes, opts.maxBytes, base, 'zstd delta'),
    opts,
    'zstd delta',
  );
}

// Shared code decodes records through zstdDecoder() (zstd-decoder.ts); where this module is loaded, the
// native addon is the decoder.
setZstdDecoder({ implementation: 'native', decompress, applyDelta });
