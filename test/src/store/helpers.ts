import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { DepotsyncError } from '../../../src/errors.js';
import { blake3Hex } from '../../../src/hash/blake3.js';

/** A fresh temporary folder per call, removed after the test. */
const dirs: string[] = [];
export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'depotsync-store-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

export function chunk(bytes = 1000): { id: string; data: Buffer } {
  const data = randomBytes(bytes);
  return { id: blake3Hex(data), data };
}

export async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<DepotsyncError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof DepotsyncError) return e;
    throw e;
  }
  throw new Error('expected a DepotsyncError, got success');
}
