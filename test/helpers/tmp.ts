import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh temporary folder, removed by the returned cleanup. */
export function tempDir(prefix = 'depotsync-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic pseudo-random bytes (xorshift32), fast enough for tens of MiB. */
export function pseudoRandomBytes(length: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  for (; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * The next build of an executable: 700 pseudo-random bytes inserted near the start (every later chunk
 * boundary moves) and `edits` one-byte edits spread through the file, so no chunk id of the old build
 * survives while a delta against it finds nearly everything.
 */
export function rebuiltBuild(data: Buffer, o: { seed: number; edits: number }): Buffer {
  const out = Buffer.concat([data.subarray(0, 5000), pseudoRandomBytes(700, o.seed), data.subarray(5000)]);
  for (let i = 0; i < o.edits; i++) out[10_000 + Math.floor(((out.length - 20_000) * i) / o.edits)]! ^= 0x33;
  return out;
}
