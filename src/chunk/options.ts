import { DepotsyncError } from '../errors.js';
import { highBitsMask } from './gear.js';

/** Chunk size limits in bytes. Changing them changes chunk boundaries and so every chunk id. */
export interface ChunkerOptions {
  /** No chunk but the last is shorter than this. */
  minBytes: number;
  /** The normal (target) size: a power of two; the cut masks are derived from it. */
  avgBytes: number;
  /** No chunk is longer than this: a cut is forced here. */
  maxBytes: number;
}

export const DEFAULT_CHUNKER_OPTIONS: Readonly<ChunkerOptions> = Object.freeze({
  minBytes: 16 * 1024,
  avgBytes: 64 * 1024,
  maxBytes: 256 * 1024,
});

export const CHUNKER_LIMITS = Object.freeze({
  /** Below the gear hash's 32-byte window a cut point would depend on too little content. */
  minMinBytes: 64,
  minAvgBytes: 256,
  /** log2(avg) + 2 mask bits must fit in the 32-bit fingerprint with room to spare. */
  maxAvgBytes: 256 * 1024 * 1024,
  maxMaxBytes: 1024 * 1024 * 1024,
});

/** FastCDC normalization level 2 (the paper's recommendation): masks of log2(avg) ± 2 bits. */
export const NORMALIZATION_LEVEL = 2;

/** Validated options with the two cut masks. */
export interface ChunkerParams extends ChunkerOptions {
  /** Used while the chunk is shorter than avgBytes: more bits, so cuts are rarer. */
  maskSmall: number;
  /** Used from avgBytes on: fewer bits, so cuts come sooner. */
  maskLarge: number;
}

const KEYS = ['minBytes', 'avgBytes', 'maxBytes'] as const;

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/**
 * Merge `given` over the defaults and check it, collecting every problem before failing. The error
 * names each option, what was expected and what was received.
 */
export function resolveChunkerOptions(given: Partial<ChunkerOptions> = {}): ChunkerParams {
  const problems: string[] = [];
  if (typeof given !== 'object' || given === null) {
    throw new DepotsyncError(
      'bad-input',
      `chunker options: expected an object, got ${JSON.stringify(given)}`,
    );
  }
  for (const key of Object.keys(given)) {
    if (!(KEYS as readonly string[]).includes(key))
      problems.push(`unknown option ${JSON.stringify(key)} (known: ${KEYS.join(', ')})`);
  }
  const o = { ...DEFAULT_CHUNKER_OPTIONS, ...given };
  const L = CHUNKER_LIMITS;
  const got = (k: keyof ChunkerOptions): string => JSON.stringify(o[k]);
  for (const k of KEYS) {
    if (typeof o[k] !== 'number' || !Number.isSafeInteger(o[k]))
      problems.push(`${k} must be an integer number of bytes, got ${got(k)}`);
  }
  if (problems.length === 0) {
    if (!isPowerOfTwo(o.avgBytes) || o.avgBytes < L.minAvgBytes || o.avgBytes > L.maxAvgBytes) {
      problems.push(
        `avgBytes must be a power of two from ${L.minAvgBytes} to ${L.maxAvgBytes}, got ${got('avgBytes')}`,
      );
    }
    if (o.minBytes < L.minMinBytes || o.minBytes >= o.avgBytes) {
      problems.push(
        `minBytes must be at least ${L.minMinBytes} and less than avgBytes (${o.avgBytes}), got ${got('minBytes')}`,
      );
    }
    if (o.maxBytes <= o.avgBytes || o.maxBytes > L.maxMaxBytes) {
      problems.push(
        `maxBytes must be greater than avgBytes (${o.avgBytes}) and at most ${L.maxMaxBytes}, got ${got('maxBytes')}`,
      );
    }
  }
  if (problems.length > 0) {
    throw new DepotsyncError('bad-input', `invalid chunker options: ${problems.join('; ')}`, {
      hint: `use the defaults (${KEYS.map((k) => `${k} ${DEFAULT_CHUNKER_OPTIONS[k]}`).join(', ')}) unless you have measured better`,
    });
  }
  const bits = Math.round(Math.log2(o.avgBytes));
  return {
    minBytes: o.minBytes,
    avgBytes: o.avgBytes,
    maxBytes: o.maxBytes,
    maskSmall: highBitsMask(bits + NORMALIZATION_LEVEL),
    maskLarge: highBitsMask(bits - NORMALIZATION_LEVEL),
  };
}
