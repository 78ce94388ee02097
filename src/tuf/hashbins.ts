import { createHash } from 'node:crypto';
import { DepotsyncError } from '../errors.js';

/**
 * Hashed-bin delegation (TUF convention): the targets role delegates to N bins; a target belongs to the
 * bin whose `path_hash_prefixes` entry is a prefix of the hex SHA-256 of its target path (UTF-8).
 * One hex-digit prefix per bin: 16 bins `bin-0`…`bin-f`, 256 bins `bin-00`…`bin-ff`, 4096 bins
 * `bin-000`…`bin-fff`. One change re-signs one small bin instead of a document listing everything.
 */
export type BinCount = 16 | 256 | 4096;
export const BIN_COUNTS: readonly BinCount[] = [16, 256, 4096];
export const DEFAULT_BIN_COUNT: BinCount = 256;

export function isBinCount(n: unknown): n is BinCount {
  return n === 16 || n === 256 || n === 4096;
}

export function prefixLength(binCount: BinCount): number {
  if (!isBinCount(binCount)) {
    throw new DepotsyncError(
      'bad-input',
      `binCount must be 16, 256 or 4096, got ${JSON.stringify(binCount)}`,
    );
  }
  return binCount === 16 ? 1 : binCount === 256 ? 2 : 3;
}

export function binName(prefix: string): string {
  return `bin-${prefix}`;
}

/** All hash prefixes for a bin count, in order (`00`, `01`, … `ff`). */
export function binPrefixes(binCount: BinCount): string[] {
  const len = prefixLength(binCount);
  return Array.from({ length: binCount }, (_, i) => i.toString(16).padStart(len, '0'));
}

export function targetPathHash(targetPath: string): string {
  return createHash('sha256').update(targetPath, 'utf8').digest('hex');
}

/** The bin responsible for a target path. */
export function binFor(targetPath: string, binCount: BinCount = DEFAULT_BIN_COUNT): string {
  return binName(targetPathHash(targetPath).slice(0, prefixLength(binCount)));
}
