import type { DecodeOptions } from './zstd.js';

/** A zstd decoder: the native addon where it was built, the WebAssembly build where it was not. */
export interface ZstdDecoder {
  readonly implementation: 'native' | 'wasm';
  /** Why the native addon was not used (only for 'wasm'). */
  readonly nativeError?: string;
  decompress(bytes: Uint8Array, opts: DecodeOptions): Buffer;
  applyDelta(base: Uint8Array, deltaBytes: Uint8Array, opts: DecodeOptions): Buffer;
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
      return { implementation: 'native', decompress: z.decompress, applyDelta: z.applyDelta };
    } catch (e) {
      nativeError = (e as Error).message;
    }
  }
  const { loadZstdWasm } = await import('./zstd-wasm.js');
  const w = await loadZstdWasm();
  return {
    implementation: 'wasm',
    ...(nativeError === undefined ? {} : { nativeError }),
    decompress: (bytes, o) => w.decompress(bytes, o),
    applyDelta: (base, d, o) => w.applyDelta(base, d, o),
  };
}
