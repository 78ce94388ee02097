import { DepotsyncError } from '../../src/errors.js';

/**
 * A token bucket per key (a source address, a machine name), in memory. Each key may spend
 * `perMinute` requests in a burst and earns them back evenly over a minute. Blocks one address (or one
 * machine) from flooding enrollment or status reports while every other key is still served.
 *
 * Memory is bounded: full buckets carry no information and are dropped on a sweep, and at most
 * `maxKeys` keys are tracked (the oldest are forgotten first: a forgotten key starts with a full bucket,
 * which errs on the side of serving).
 */
export interface RateLimiterOptions {
  perMinute: number;
  /** Milliseconds clock; injectable so tests never sleep. */
  clockMs?: () => number;
  maxKeys?: number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

const MINUTE_MS = 60_000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMinute: number;
  private readonly clockMs: () => number;
  private readonly maxKeys: number;
  private lastSweepMs: number;

  constructor(opts: RateLimiterOptions) {
    if (!Number.isInteger(opts.perMinute) || opts.perMinute < 1) {
      throw new DepotsyncError(
        'bad-input',
        `RateLimiter: perMinute must be an integer >= 1, got ${JSON.stringify(opts.perMinute)}`,
      );
    }
    const maxKeys = opts.maxKeys ?? 100_000;
    if (!Number.isInteger(maxKeys) || maxKeys < 1) {
      throw new DepotsyncError(
        'bad-input',
        `RateLimiter: maxKeys must be an integer >= 1, got ${JSON.stringify(opts.maxKeys)}`,
      );
    }
    this.perMinute = opts.perMinute;
    this.clockMs = opts.clockMs ?? Date.now;
    this.maxKeys = maxKeys;
    this.lastSweepMs = this.clockMs();
  }

  /** Spend one token of `key`: `{ok: true}`, or `{ok: false, retryAfterMs}` when the bucket is empty. */
  take(key: string): { ok: true } | { ok: false; retryAfterMs: number } {
    const now = this.clockMs();
    this.sweep(now);
    const b = this.refilled(this.buckets.get(key), now);
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      return { ok: false, retryAfterMs: Math.ceil(((1 - b.tokens) * MINUTE_MS) / this.perMinute) };
    }
    b.tokens -= 1;
    // Re-insert so the Map's order is least recently used first (eviction below).
    this.buckets.delete(key);
    this.buckets.set(key, b);
    if (this.buckets.size > this.maxKeys) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    return { ok: true };
  }

  /** Keys currently tracked (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }

  private refilled(b: Bucket | undefined, now: number): Bucket {
    if (!b) return { tokens: this.perMinute, atMs: now };
    const earned = (Math.max(0, now - b.atMs) * this.perMinute) / MINUTE_MS;
    return { tokens: Math.min(this.perMinute, b.tokens + earned), atMs: now };
  }

  private sweep(now: number): void {
    if (now - this.lastSweepMs < MINUTE_MS) return;
    this.lastSweepMs = now;
    for (const [key, b] of this.buckets) {
      if (this.refilled(b, now).tokens >= this.perMinute) this.buckets.delete(key);
    }
  }
}
