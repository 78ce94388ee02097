import { timingSafeEqual } from 'node:crypto';
import type { Logger } from '../log.js';
import {
  backend,
  ONE_SHOT_MAX_BYTES,
  ONE_SHOT_PACKAGE,
  type Blake3Backend,
  type Blake3Implementation,
  type RawHasher,
} from './backend.js';

export { loadWasmBackend, type Blake3Backend, type Blake3Implementation } from './backend.js';
export { hashFile, type HashFileOptions } from './hash-file.js';

/** Length of a BLAKE3 digest (and so of a chunk id) in bytes; hex ids are twice as long. */
export const BLAKE3_BYTES = 32;

/** A streaming hasher. `update` copies nothing: the caller may reuse `data` once it returns. */
export interface Blake3Hasher {
  update(data: Uint8Array): Blake3Hasher;
  digest(): Buffer;
  digestHex(): string;
}

function toBuffer(d: Uint8Array): Buffer {
  return Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

function feed(raw: RawHasher, data: Uint8Array, maxUpdateBytes: number): void {
  // The native addon reads the bytes through napi_get_arraybuffer_info, which refuses a
  // SharedArrayBuffer; the addon does not check and dereferences null (the process segfaults).
  if (data.buffer instanceof SharedArrayBuffer) data = Uint8Array.prototype.slice.call(data);
  if (data.byteLength <= maxUpdateBytes) {
    raw.update(data);
    return;
  }
  for (let i = 0; i < data.byteLength; i += maxUpdateBytes) raw.update(data.subarray(i, i + maxUpdateBytes));
}

/** A hasher on an explicit backend (tests and benchmarks use this to drive the wasm fallback). */
export function createBlake3With(be: Blake3Backend): Blake3Hasher {
  const raw = be.createRaw();
  const max = be.maxUpdateBytes;
  const hasher: Blake3Hasher = {
    update(data) {
      feed(raw, data, max);
      return hasher;
    },
    digest: () => toBuffer(raw.digest()),
    digestHex: () => toBuffer(raw.digest()).toString('hex'),
  };
  return hasher;
}

/** A streaming BLAKE3 hasher on the process's backend. */
export function createBlake3(): Blake3Hasher {
  return createBlake3With(backend);
}

const oneShot = backend.oneShot;

/**
 * One-shot BLAKE3 (32 bytes). The hot path: chunk-sized inputs in one call to `backend.oneShot` when
 * it loaded, larger ones (and everything without it) through one hasher of the main backend.
 */
export function blake3(data: Uint8Array): Buffer {
  if (oneShot !== undefined && data.byteLength <= ONE_SHOT_MAX_BYTES) return oneShot(data);
  return blake3With(backend, data);
}

/** One-shot BLAKE3 through the main backend alone (tests compare the two paths). */
export function blake3With(be: Blake3Backend, data: Uint8Array): Buffer {
  const raw = be.createRaw();
  feed(raw, data, be.maxUpdateBytes);
  return toBuffer(raw.digest());
}

/** One-shot BLAKE3 as 64 lowercase hex characters: the form chunk and manifest ids take. */
export function blake3Hex(data: Uint8Array): string {
  return blake3(data).toString('hex');
}

/**
 * Constant-time equality of two digests, raw or hex. Comparing a received hash with the expected one
 * in constant time blocks a timing oracle that would let a peer learn a secret digest byte by byte.
 */
export function digestEquals(a: Uint8Array | string, b: Uint8Array | string): boolean {
  const ab = typeof a === 'string' ? Buffer.from(a, 'latin1') : toBuffer(a);
  const bb = typeof b === 'string' ? Buffer.from(b, 'latin1') : toBuffer(b);
  return ab.byteLength === bb.byteLength && timingSafeEqual(ab, bb);
}

/** Which implementation this process hashes with. */
export function blake3Implementation(): Blake3Implementation {
  return backend.implementation;
}

/**
 * Report the implementation, loudly when it is the slow WebAssembly fallback (20x slower: publishing
 * and syncing large packages would crawl). Call once at start-up of every long-running command.
 */
export function checkBlake3(log?: Logger): Blake3Implementation {
  return checkBlake3With(backend, log);
}

/** `checkBlake3` on an explicit backend (for tests of the warning). */
export function checkBlake3With(be: Blake3Backend, log?: Logger): Blake3Implementation {
  const impl = be.implementation;
  const fields = {
    component: 'hash',
    blake3: impl,
    blake3Package: be.packageChoice,
    blake3OneShot: be.oneShot ? (impl === 'wasm' ? 'blake3-wasm' : ONE_SHOT_PACKAGE) : 'none',
  };
  if (impl === 'native') {
    log?.debug(fields, 'BLAKE3: native addon @c4312/blake3-native');
    return impl;
  }
  const message =
    'BLAKE3 is running on the slow WebAssembly fallback (about 0.3 GB/s instead of 6 GB/s or more): ' +
    `the native addon @c4312/blake3-native did not load (${be.nativeError ?? 'unknown reason'})`;
  const hint =
    'install a C/C++ toolchain and Python (build-essential python3), then reinstall so node-gyp builds ' +
    'the addon: `npm rebuild @c4312/blake3-native blake3` (or `rm -rf node_modules && npm ci`)';
  if (log) log.warn({ ...fields, hint }, message);
  else process.emitWarning(`${message}; ${hint}`, { code: 'DEPOTSYNC_BLAKE3_WASM' });
  return impl;
}
