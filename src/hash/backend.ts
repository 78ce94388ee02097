import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import blake3Wasm from 'blake3-wasm';

/**
 * Loads the BLAKE3 implementation once, at module load.
 *
 * The `blake3` package picks, at install time, between the native addon `@c4312/blake3-native`
 * (compiled by node-gyp; SIMD assembly, ~6-7 GB/s on one core) and the `blake3-wasm` fallback
 * (~0.3 GB/s). We do not take its word for it: we load the addon ourselves, through `blake3`'s own
 * dependency resolution, and prove it works by hashing the empty input against the official vector.
 * We also talk to the raw binding directly (`createHash()` → `{update, digest}`) instead of the
 * package's `hash()`, which builds a Node.js Transform stream per call.
 */
export type Blake3Implementation = 'native' | 'wasm';

/** The minimal hasher both backends provide. `update` must not retain `data` after it returns. */
export interface RawHasher {
  update(data: Uint8Array): unknown;
  digest(): Uint8Array;
}

export interface Blake3Backend {
  readonly implementation: Blake3Implementation;
  /** Largest slice one `update` call may take (the wasm glue mishandles more than its 1 MiB scratch). */
  readonly maxUpdateBytes: number;
  createRaw(): RawHasher;
  /** Why the native addon could not be used (only set for 'wasm'). */
  readonly nativeError?: string;
  /** What the `blake3` package itself re-exports: its install-time choice. */
  readonly packageChoice: Blake3Implementation | 'unknown';
  /**
   * One-shot BLAKE3 for inputs up to `ONE_SHOT_MAX_BYTES` (chunk ids): `@napi-rs/blake-hash` when it
   * loaded and passed its self-test (see `loadOneShot`), blake3-wasm's own for the wasm backend.
   */
  readonly oneShot?: (data: Uint8Array) => Buffer;
  /** File that `oneShot` was loaded from (reported; tests check which library it is). */
  readonly oneShotPath?: string;
}

/**
 * Inputs up to this size go to `oneShot` when it is loaded: it is faster for chunk-sized inputs, the
 * addon's AVX-512 assembly for large ones (bench/README.md, `hash`).
 */
export const ONE_SHOT_MAX_BYTES = 1024 * 1024;

const EMPTY_HASH_HEX = 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262';
/** BLAKE3 of the official test vectors' 1025-byte input (test_vectors.json). */
const VECTOR_1025_HEX = 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444';
const WASM_SCRATCH_BYTES = 1024 * 1024;

const req = createRequire(import.meta.url);

interface NativeBinding {
  createHash(): { update(d: Uint8Array): unknown; digest(length?: number): Buffer };
}

function loadNative(): NativeBinding {
  // Resolve the addon as the `blake3` package would (its dependency, wherever npm placed it).
  const fromBlake3 = createRequire(req.resolve('blake3'));
  const pkgDir = dirname(fromBlake3.resolve('@c4312/blake3-native/package.json'));
  const path = join(pkgDir, 'build', 'Release', 'blake3.node');
  const binding = fromBlake3(path) as Partial<NativeBinding>;
  if (typeof binding.createHash !== 'function') throw new Error('blake3.node has no createHash export');
  const probe = binding.createHash();
  probe.update(new Uint8Array(0));
  const hex = Buffer.from(probe.digest()).toString('hex');
  if (hex !== EMPTY_HASH_HEX) throw new Error(`blake3.node self-test failed: empty input hashed to ${hex}`);
  return binding as NativeBinding;
}

function packageChoice(): Blake3Implementation | 'unknown' {
  try {
    const fromBlake3 = createRequire(req.resolve('blake3'));
    const pkg = fromBlake3('blake3') as Record<string, unknown>;
    // `NodeHash` only exists in the native package; the wasm package exports `WasmHasher` only.
    if (typeof pkg['NodeHash'] === 'function') return 'native';
    if (typeof pkg['createHash'] === 'function') return 'wasm';
  } catch {
    // blake3 itself failed to load: we report what we could load ourselves.
  }
  return 'unknown';
}

interface WasmModule {
  load(): Promise<void>;
  hash(input: Uint8Array): Buffer;
  createHash(): { update(d: Uint8Array): unknown; digest(): Uint8Array; dispose(): void };
}

/**
 * The WebAssembly fallback (blake3-wasm), and the self-contained agent's only BLAKE3; exported so
 * tests and benchmarks can exercise it even when native loads.
 *
 * Its hashers live in the WebAssembly heap, a fixed 16 MiB, and are freed only by a finalizer: a
 * hasher per chunk, thousands of them before a garbage collection, exhausts the heap (the process
 * aborts with OOM). So chunk-sized inputs go through its one-shot `hash` (no hasher: a scratch
 * buffer), and every hasher is disposed of at its digest.
 */
export async function loadWasmBackend(nativeError?: string): Promise<Blake3Backend> {
  // Imported statically (a bundler takes it along); the native addons are only ever required at run time.
  const wasm = blake3Wasm as unknown as WasmModule;
  await wasm.load();
  const createRaw = (): RawHasher => {
    const h = wasm.createHash();
    let digest: Uint8Array | undefined;
    return {
      update: (d) => h.update(d),
      digest: () => {
        if (digest === undefined) {
          digest = h.digest();
          h.dispose();
        }
        return digest;
      },
    };
  };
  const oneShot = (data: Uint8Array) => wasm.hash(data);
  // Self-check, as for the addons: the official vectors through both paths.
  const input = Uint8Array.from({ length: 1025 }, (_, i) => i % 251);
  const viaHasher = createRaw();
  viaHasher.update(input);
  const got = [oneShot(new Uint8Array(0)), oneShot(input), viaHasher.digest()].map((d) =>
    Buffer.from(d).toString('hex'),
  );
  if (got.join() !== [EMPTY_HASH_HEX, VECTOR_1025_HEX, VECTOR_1025_HEX].join())
    throw new Error(`blake3-wasm self-test failed: ${got.join(', ')}`);
  return {
    implementation: 'wasm',
    maxUpdateBytes: WASM_SCRATCH_BYTES,
    createRaw,
    ...(nativeError === undefined ? {} : { nativeError }),
    packageChoice: packageChoice(),
    oneShot,
    oneShotPath: 'blake3-wasm',
  };
}

/**
 * `@napi-rs/blake-hash` (Rust's blake3 crate, prebuilt N-API binary from the registry): its
 * `blake3(data)` hashes in one call, where the `@c4312/blake3-native` addon constructs a wrapped
 * native object and a digest Buffer per hash, an overhead paid by every chunk-sized hash (ingest,
 * sync, serve, fetch; bench/README.md, `hash`). It also reads
 * SharedArrayBuffer views, which the c4312 addon cannot (it would crash; see blake3.ts).
 *
 * We depend on its Linux x64 glibc binary package directly, as an optional dependency: the wrapper
 * package lists a binary package per platform, and this project's registry serves only the Linux x64
 * ones, so a lock file with the wrapper could never be complete and `npm ci` refused it. Elsewhere
 * (or when it is missing or fails its self-test) everything hashes through the main backend.
 */
export const ONE_SHOT_PACKAGE = '@napi-rs/blake-hash-linux-x64-gnu';

function loadOneShot(): { fn: (data: Uint8Array) => Buffer; path: string } | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return undefined;
  try {
    const path = req.resolve(ONE_SHOT_PACKAGE);
    const mod = req(path) as { blake3?: unknown };
    const fn = mod.blake3;
    if (typeof fn !== 'function') return undefined;
    const oneShot = fn as (data: Uint8Array) => Buffer;
    // The official vectors' input (byte i = i mod 251) at 1025 bytes: two BLAKE3 chunks, so the tree
    // path is exercised too; and the empty input.
    const input = Uint8Array.from({ length: 1025 }, (_, i) => i % 251);
    if (Buffer.from(oneShot(new Uint8Array(0))).toString('hex') !== EMPTY_HASH_HEX) return undefined;
    if (Buffer.from(oneShot(input)).toString('hex') !== VECTOR_1025_HEX) return undefined;
    return { fn: oneShot, path };
  } catch {
    return undefined;
  }
}

/**
 * `DEPOTSYNC_BLAKE3=wasm` makes the process hash on WebAssembly even where the addon is built: how a
 * self-contained agent hashes, measured or tested on a machine that has the addon.
 */
export const FORCE_WASM_ENV = 'DEPOTSYNC_BLAKE3';

async function loadBackend(): Promise<Blake3Backend> {
  if (process.env[FORCE_WASM_ENV] === 'wasm') return loadWasmBackend(`${FORCE_WASM_ENV}=wasm`);
  let native: NativeBinding;
  try {
    native = loadNative();
  } catch (e) {
    return loadWasmBackend(e instanceof Error ? e.message : String(e));
  }
  const oneShot = loadOneShot();
  return {
    implementation: 'native',
    maxUpdateBytes: Number.MAX_SAFE_INTEGER,
    createRaw: () => native.createHash(),
    packageChoice: packageChoice(),
    ...(oneShot ? { oneShot: oneShot.fn, oneShotPath: oneShot.path } : {}),
  };
}

/** The backend in use for this process. */
export const backend: Blake3Backend = await loadBackend();
