import { DepotsyncError } from '../errors.js';

/*
 * The process's zstd decoder, apart from the modules that load one (zstd.ts registers the native addon,
 * zstd-decoder.ts the WebAssembly build), so that neither imports the other.
 */

export interface DecodeOptions {
  /** The most bytes the output may have: the length the caller's signed metadata declares. */
  maxBytes: number;
  /** Also refuse an output shorter than `maxBytes` (when the exact length is known). */
  exact?: boolean;
}

/** A zstd decoder: the native addon where it was built, the WebAssembly build where it was not. */
export interface ZstdDecoder {
  readonly implementation: 'native' | 'wasm';
  /** Why the native addon was not used (only for 'wasm'). */
  readonly nativeError?: string;
  decompress(bytes: Uint8Array, opts: DecodeOptions): Buffer;
  applyDelta(base: Uint8Array, deltaBytes: Uint8Array, opts: DecodeOptions): Buffer;
}

let active: ZstdDecoder | undefined;

/**
 * Make `decoder` the one `zstdDecoder()` returns. zstd.ts registers the native addon when it loads
 * (master and depot import it to compress); `loadZstdDecoder` registers what it picked.
 */
export function setZstdDecoder(decoder: ZstdDecoder): void {
  if (active?.implementation === 'native' && decoder.implementation === 'wasm') return;
  active = decoder;
}

/**
 * The decoder of this process, for code shared by every role (the store's and the download engine's
 * record decoding), which must not import the native addon itself: the agent may run without it.
 */
export function zstdDecoder(): ZstdDecoder {
  if (!active)
    throw new DepotsyncError('internal', 'no zstd decoder is loaded in this process', {
      hint: 'this is a bug: the role must await loadZstdDecoder() at start-up',
    });
  return active;
}
