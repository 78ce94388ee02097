import zstdWasm from '@bokuweb/zstd-wasm';
import { DepotsyncError } from '../errors.js';
import type { DecodeOptions } from './decoder-registry.js';

/**
 * A Zstandard *decoder* in WebAssembly (`@bokuweb/zstd-wasm`: libzstd compiled with emscripten), for
 * the agent, which runs where no native addon was built: the same `decompress` and `applyDelta` as
 * zstd.ts, with the same typed refusals. Chosen among the registry's WebAssembly and JavaScript zstd
 * packages because it decodes against a raw-content dictionary (the frames of `zstd --patch-from`);
 * measured in bench/README.md ("zstd in WebAssembly").
 *
 * The package decodes a frame in one call into a buffer of the frame's declared content size (or of
 * the size we give it when the frame declares none), so the output is bounded by checking the frame
 * header here first: a frame that declares more than `maxBytes` is refused before anything is
 * allocated, and one that produces more than the buffer fails inside libzstd (dstSize_tooSmall).
 */

export const ZSTD_WASM_PACKAGE = '@bokuweb/zstd-wasm';

interface Binding {
  init(): Promise<void>;
  decompress(buf: Uint8Array, opts?: { defaultHeapSize: number }): Uint8Array;
  createDCtx(): number;
  freeDCtx(dctx: number): void;
  decompressUsingDict(
    dctx: number,
    buf: Uint8Array,
    dict: Uint8Array,
    opts?: { defaultHeapSize: number },
  ): Uint8Array;
}

const FRAME_MAGIC = 0xfd2fb528;
const DICTIONARY_MAGIC = 0xec30a437;
/**
 * The WebAssembly heap is at most 2 GiB (the package's build), shared by the frame, the base and the
 * output: a larger output is refused up front rather than failing inside the allocator.
 */
export const WASM_MAX_OUTPUT_BYTES = 1024 * 1024 * 1024;

/** `printf 'depotsync: zstd self-check vector, 0123456789 0123456789 0123456789' | zstd -19 --no-check`. */
const VECTOR_PLAIN = 'depotsync: zstd self-check vector, 0123456789 0123456789 0123456789';
const VECTOR_FRAME = Buffer.from(
  '28b52ffd0068a50100d4026465706f7473796e633a207a7374642073656c662d636865636b20766563746f722c2030313233' +
    '34353637383901' +
    '00b552ca',
  'hex',
);
/**
 * `zstd -19 --patch-from=BASE TARGET`, BASE = `deltaVectorBase()`, TARGET = BASE with 'depotsync delta
 * vector' inserted after byte 1000: 50 bytes that only decode against the base.
 */
const DELTA_VECTOR = Buffer.from(
  '28b52ffd64160f250100b8cc6465706f7473796e632064656c746120766563746f7202002a9801c76ff203509d2b449ffcdf',
  'hex',
);
const DELTA_VECTOR_INSERT = 'depotsync delta vector';

function deltaVectorBase(): Buffer {
  const b = Buffer.alloc(4096);
  for (let i = 0, x = 7; i < b.length; i++) b[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  return b;
}

/** libzstd error codes (zstd_errors.h) the package reports as "... code -N". */
const ERROR_NAMES: Record<number, string> = {
  10: 'prefix_unknown',
  14: 'frameParameter_unsupported',
  16: 'frameParameter_windowTooLarge',
  20: 'corruption_detected',
  22: 'checksum_wrong',
  32: 'dictionary_corrupted',
  34: 'dictionary_wrong',
  64: 'memory_allocation',
  70: 'dstSize_tooSmall',
  72: 'srcSize_wrong',
};

function errorCodeOf(e: unknown): number | undefined {
  const m = /code -(\d+)/.exec((e as Error)?.message ?? '');
  return m ? Number(m[1]) : undefined;
}

function zstdError(e: unknown, what: string, maxBytes: number): DepotsyncError {
  const code = errorCodeOf(e);
  const name =
    code === undefined ? ((e as Error)?.message ?? String(e)) : (ERROR_NAMES[code] ?? `error ${code}`);
  if (code === 70) {
    return new DepotsyncError(
      'too-large',
      `${what}: the frame decodes to more than the ${maxBytes} bytes expected`,
      {
        hint: 'the content does not match its signed size; decoding stopped at the limit',
        cause: e,
      },
    );
  }
  if (code === 64 || code === 16) {
    return new DepotsyncError(
      'too-large',
      `${what}: the frame needs more memory than its declared size allows (${name})`,
      {
        cause: e,
      },
    );
  }
  if (code === 72) {
    return new DepotsyncError('truncated', `${what}: the frame ends early (${name})`, {
      hint: 'fetch the content again',
      cause: e,
    });
  }
  return new DepotsyncError('corrupt', `${what}: ${name}`, {
    hint: 'fetch the content again; the source may be damaged',
    cause: e,
  });
}

/** The frame header's content size: a number, null when the frame declares none; typed errors for a bad header. */
export function frameContentSize(frame: Uint8Array, what = 'zstd'): number | null {
  const view = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (view.length < 4 || view.readUInt32LE(0) !== FRAME_MAGIC) {
    throw new DepotsyncError(
      'corrupt',
      `${what}: not a zstd frame (${view.length < 4 ? 'shorter than its magic number' : 'wrong magic number'})`,
    );
  }
  if (view.length < 5) throw new DepotsyncError('truncated', `${what}: unreadable frame header (cut short)`);
  const fhd = view[4] as number;
  if (fhd & 0x08) throw new DepotsyncError('corrupt', `${what}: unreadable frame header (reserved bit set)`);
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  const dictIdBytes = [0, 1, 2, 4][fhd & 3] as number;
  const fcsBytes = fcsFlag === 0 ? singleSegment : ([0, 2, 4, 8][fcsFlag] as number);
  const at = 5 + (singleSegment ? 0 : 1) + dictIdBytes;
  if (view.length < at + fcsBytes)
    throw new DepotsyncError('truncated', `${what}: unreadable frame header (cut short)`);
  switch (fcsBytes) {
    case 0:
      return null;
    case 1:
      return view[at] as number;
    case 2:
      return view.readUInt16LE(at) + 256;
    case 4:
      return view.readUInt32LE(at);
    default: {
      const v = view.readBigUInt64LE(at);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    }
  }
}

function checkMaxBytes(maxBytes: number, what: string): void {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0 || maxBytes > WASM_MAX_OUTPUT_BYTES) {
    throw new DepotsyncError(
      'bad-input',
      `${what}: maxBytes must be a whole number of bytes up to ${WASM_MAX_OUTPUT_BYTES} (the WebAssembly decoder's limit), got ${maxBytes}`,
    );
  }
}

function usesBase(base: Uint8Array | undefined): base is Uint8Array {
  return (
    base !== undefined &&
    base.length > 0 &&
    !(base.length >= 4 && Buffer.from(base.buffer, base.byteOffset, 4).readUInt32LE(0) === DICTIONARY_MAGIC)
  );
}

export interface ZstdWasmDecoder {
  decompress(bytes: Uint8Array, opts: DecodeOptions): Buffer;
  applyDelta(base: Uint8Array, deltaBytes: Uint8Array, opts: DecodeOptions): Buffer;
}

function decoderOn(binding: Binding): ZstdWasmDecoder {
  const run = (
    frame: Uint8Array,
    base: Uint8Array | undefined,
    opts: DecodeOptions,
    what: string,
  ): Buffer => {
    checkMaxBytes(opts.maxBytes, what);
    const declared = frameContentSize(frame, what);
    if (declared !== null && declared > opts.maxBytes) {
      throw new DepotsyncError(
        'too-large',
        `${what}: the frame declares ${declared} bytes, more than the ${opts.maxBytes} expected`,
        {
          hint: 'the content does not match its signed size; it is refused before decoding',
        },
      );
    }
    // A frame without a declared size gets a buffer of exactly the cap: libzstd fails past it.
    const heap = { defaultHeapSize: Math.max(1, opts.maxBytes) };
    let out: Uint8Array;
    try {
      if (usesBase(base)) {
        const dctx = binding.createDCtx();
        try {
          out = binding.decompressUsingDict(dctx, frame, base, heap);
        } finally {
          binding.freeDCtx(dctx);
        }
      } else {
        out = binding.decompress(frame, heap);
      }
    } catch (e) {
      // The buffer had the declared size: a frame cannot overrun its own declaration, what follows it can.
      if (declared !== null && errorCodeOf(e) === 70)
        throw new DepotsyncError(
          'corrupt',
          `${what}: the input decodes past the ${declared} bytes its frame declares (bytes follow the frame, or it is damaged)`,
          {
            cause: e,
          },
        );
      throw zstdError(e, what, opts.maxBytes);
    }
    if (out.length > opts.maxBytes)
      throw new DepotsyncError(
        'too-large',
        `${what}: the frame decodes to more than the ${opts.maxBytes} bytes expected`,
      );
    // One call decodes every frame in the input: more output than the first frame declares means more frames.
    if (declared !== null && out.length !== declared)
      throw new DepotsyncError(
        'corrupt',
        `${what}: bytes follow the frame (${out.length} decoded, ${declared} declared)`,
      );
    if (opts.exact && out.length !== opts.maxBytes)
      throw new DepotsyncError('corrupt', `${what}: decoded ${out.length} bytes, expected ${opts.maxBytes}`);
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  };
  return {
    decompress: (bytes, opts) => run(bytes, undefined, opts, 'zstd decompress'),
    applyDelta: (base, deltaBytes, opts) => run(deltaBytes, base, opts, 'zstd delta'),
  };
}

/**
 * Load the package and prove it decodes: the reference frame of zstd.ts, and a `--patch-from` delta
 * against its base (so raw-content dictionaries work), each byte for byte.
 */
export function loadZstdWasm(): Promise<ZstdWasmDecoder> {
  // Once per process: the package's init() instantiates its module again on each call, and from the
  // third call on the decoders it returns fail (prefix_unknown on valid frames).
  loading ??= loadOnce().catch((e: unknown) => {
    loading = undefined;
    throw e;
  });
  return loading;
}

let loading: Promise<ZstdWasmDecoder> | undefined;

async function loadOnce(): Promise<ZstdWasmDecoder> {
  // A static import, so a bundler takes the package's JavaScript along (its .wasm file it reads at init).
  const binding = zstdWasm as unknown as Binding;
  try {
    await binding.init();
  } catch (e) {
    throw new DepotsyncError(
      'internal',
      `zstd: the WebAssembly decoder ${ZSTD_WASM_PACKAGE} could not be loaded: ${(e as Error).message}`,
      {
        hint: `install it: npm install ${ZSTD_WASM_PACKAGE}@0.0.27`,
        cause: e,
      },
    );
  }
  const decoder = decoderOn(binding);
  try {
    const plain = decoder.decompress(VECTOR_FRAME, { maxBytes: VECTOR_PLAIN.length, exact: true });
    if (plain.toString('latin1') !== VECTOR_PLAIN)
      throw new Error('the reference frame decoded to other bytes');
    const base = deltaVectorBase();
    const target = Buffer.concat([
      base.subarray(0, 1000),
      Buffer.from(DELTA_VECTOR_INSERT),
      base.subarray(1000),
    ]);
    if (!decoder.applyDelta(base, DELTA_VECTOR, { maxBytes: target.length, exact: true }).equals(target))
      throw new Error('the reference delta rebuilt other bytes');
  } catch (e) {
    throw new DepotsyncError(
      'internal',
      `zstd: the WebAssembly decoder ${ZSTD_WASM_PACKAGE} failed its self-check: ${(e as Error).message}`,
      {
        hint: `reinstall it: npm install ${ZSTD_WASM_PACKAGE}@0.0.27`,
        cause: e,
      },
    );
  }
  return decoder;
}
