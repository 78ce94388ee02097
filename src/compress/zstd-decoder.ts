import { DepotsyncError } from '../errors.js';
import type { DecodeOptions } from './zstd.js';

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

/**
 * The agent's decoder. zstd.ts loads (and self-checks) the native addon when its module is first
 * imported, so it is imported here only on demand: a process without the addon never fails on it,
 * and falls back to zstd-wasm.ts (which self-checks too).
 */
export async function loadZstdDecoder(opts: { preferWasm?: boolean } = {}): Promise<ZstdDecoder> {
  let nativeError: string | undefined;
  if (!opts.preferWasm) {
    try {
      const z = await import('./zstd.js');
      const native: ZstdDecoder = {
        implementation: 'native',
        decompress: z.decompress,
        applyDelta: z.applyDelta,
      };
      setZstdDecoder(native);
      return native;
    } catch (e) {
      nativeError = (e as Error).message;
    }
  }
  const { loadZstdWasm } = await import('./zstd-wasm.js');
  const w = await loadZstdWasm();
  const wasm: ZstdDecoder = {
    implementation: 'wasm',
    ...(nativeError === undefined ? {} : { nativeError }),
    decompress: (bytes, o) => w.decompress(bytes, o),
    applyDelta: (base, d, o) => w.applyDelta(base, d, o),
  };
  setZstdDecoder(wasm);
  return wasm;
}
