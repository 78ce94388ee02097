import { open, type FileHandle } from 'node:fs/promises';
import { DepotsyncError, fromSystemError } from '../errors.js';
import { backend, type RawHasher } from './backend.js';

export interface HashFileOptions {
  /** Bytes per read; two buffers of this size are the whole memory used. */
  readBytes?: number;
}

/** 2 MiB reads were the fastest of the sizes tried (bench/README.md, `hash`). */
export const DEFAULT_HASH_FILE_OPTIONS = { readBytes: 2 * 1024 * 1024 } as const;

function feed(raw: RawHasher, data: Uint8Array): void {
  const max = backend.maxUpdateBytes;
  for (let i = 0; i < data.byteLength; i += max)
    raw.update(data.subarray(i, Math.min(data.byteLength, i + max)));
}

/**
 * BLAKE3 of a whole file, as hex. Memory is bounded (two read buffers) and reading overlaps hashing:
 * while the native hasher digests one buffer on this thread, the next read fills the other one on the
 * libuv thread pool, so throughput approaches the hash speed instead of read + hash.
 */
export async function hashFile(path: string, opts: HashFileOptions = {}): Promise<string> {
  const readBytes = opts.readBytes ?? DEFAULT_HASH_FILE_OPTIONS.readBytes;
  // Checked here, not with src/config's helpers: src/config reads settings through the content parser,
  // and content hashes, so that import would make the folders depend on each other.
  if (!Number.isInteger(readBytes) || readBytes < 4096 || readBytes > 1 << 30) {
    const got = JSON.stringify(readBytes);
    throw new DepotsyncError(
      'bad-input',
      `hashFile: readBytes must be an integer from 4096 to ${1 << 30}, got ${got}`,
    );
  }
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fromSystemError(e, `hashing ${path}`);
  }
  let pending: Promise<{ bytesRead: number }> | undefined;
  try {
    const raw = backend.createRaw();
    const bufs = [Buffer.allocUnsafe(readBytes), Buffer.allocUnsafe(readBytes)] as const;
    let position = 0;
    let which = 0;
    pending = fh.read(bufs[0], 0, readBytes, position);
    for (;;) {
      const { bytesRead } = await pending;
      if (bytesRead === 0) break;
      position += bytesRead;
      const current = bufs[which]!;
      which ^= 1;
      // Start the next read into the other buffer before hashing this one.
      pending = fh.read(bufs[which]!, 0, readBytes, position);
      feed(raw, bytesRead === readBytes ? current : current.subarray(0, bytesRead));
    }
    return Buffer.from(raw.digest()).toString('hex');
  } catch (e) {
    await pending?.catch(() => undefined); // never close the handle under an in-flight read
    throw fromSystemError(e, `hashing ${path}`);
  } finally {
    await fh.close();
  }
}
