import type { ChosenFrame } from '../wire/chunk-delta.js';
import { parseEntry, type DeltaCache } from './cache.js';
import type { DeltaPool } from './pool.js';

/**
 * Where a server's zstd chunk deltas come from when it answers `POST /v1/chunks/delta`: its cache
 * (the master's background computation, or the deltas a depot received from upstream), else, with a
 * pool, computed on request at a fast level. Resolves undefined when there is no delta or it does not
 * pay off (not smaller than the chunk compressed alone): the answer is then the byte delta or the chunk.
 */
export interface ZstdDeltaSource {
  frame(
    target: string,
    bases: readonly string[],
    targetBytes: Buffer,
    base: Buffer,
  ): Promise<Buffer | undefined>;
  /** A frame against bases chosen by content (kind 5), for receivers that accept them. */
  chosen?(target: string, bases: readonly string[]): Promise<ChosenFrame | undefined>;
}

/** Level of deltas computed on request: measured fastest at no loss in bench/README.md ("Version deltas"). */
export const ON_REQUEST_LEVEL = 3;

export class CachedZstdDeltas implements ZstdDeltaSource {
  constructor(
    private readonly cache: DeltaCache | undefined,
    private readonly pool: DeltaPool | undefined,
    private readonly level = ON_REQUEST_LEVEL,
  ) {}

  async frame(
    target: string,
    bases: readonly string[],
    targetBytes: Buffer,
    base: Buffer,
  ): Promise<Buffer | undefined> {
    const hit = await this.cache?.get(target, bases);
    const entry = hit && parseEntry(hit);
    if (hit && entry?.kind !== 'chosen')
      return entry && entry.frame.length < targetBytes.length ? entry.frame : undefined;
    // Unknown, or made against other bases than these: computed now for this receiver.
    if (!this.pool) return undefined;
    const r = await this.pool.run(base, targetBytes, this.level).catch(() => undefined);
    if (!r) return undefined;
    return r.frame.length < r.alone && r.frame.length < targetBytes.length ? r.frame : undefined;
  }

  async chosen(target: string, bases: readonly string[]): Promise<ChosenFrame | undefined> {
    const hit = await this.cache?.get(target, bases);
    const entry = hit && parseEntry(hit);
    return entry?.kind === 'chosen' ? { bases: entry.bases, frame: entry.frame } : undefined;
  }
}
