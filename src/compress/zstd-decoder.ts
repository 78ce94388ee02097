import { setZstdDecoder, type ZstdDecoder } from './decoder-registry.js';

export { setZstdDecoder, zstdDecoder, type ZstdDecoder } from './decoder-registry.js';

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
