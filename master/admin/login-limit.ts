import { DepotsyncError } from '../../src/errors.js';

/**
 * Failed-login counter per key (a source address, an operator name) over a sliding window, in memory.
 * Only FAILURES count, so an operator logging in correctly never uses up anything; a key that reached
 * `maxFailures` is refused (even with the right token) until its oldest failure leaves the window.
 * Threat: guessing a TOTP code (or a token) by repetition. Tokens are 256-bit and unguessable, but a
 * 6-digit code is not; limiting by operator stops an attacker spread over many addresses, limiting by
 * address stops one address trying many operators, and neither touches other operators' logins.
 * Memory is bounded (`maxKeys`, oldest key forgotten first).
 */
export interface LoginLimiterOptions {
  maxFailures: number;
  windowMs: number;
  clockMs: () => number;
  maxKeys?: number;
}

export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();
  private readonly maxKeys: number;

  constructor(private readonly o: LoginLimiterOptions) {
    if (!Number.isInteger(o.maxFailures) || o.maxFailures < 1) {
      throw new DepotsyncError(
        'bad-input',
        `LoginLimiter: maxFailures must be an integer >= 1, got ${JSON.stringify(o.maxFailures)}`,
      );
    }
    if (!Number.isInteger(o.windowMs) || o.windowMs < 1) {
      throw new DepotsyncError(
        'bad-input',
        `LoginLimiter: windowMs must be an integer >= 1, got ${JSON.stringify(o.windowMs)}`,
      );
    }
    this.maxKeys = o.maxKeys ?? 100_000;
  }

  /** 0 when `key` may try; else milliseconds until it may. */
  retryAfterMs(key: string): number {
    const list = this.recent(key);
    if (list.length < this.o.maxFailures) return 0;
    return Math.max(1, list[list.length - this.o.maxFailures]! + this.o.windowMs - this.o.clockMs());
  }

  fail(key: string): void {
    const list = this.recent(key);
    list.push(this.o.clockMs());
    if (list.length > this.o.maxFailures) list.splice(0, list.length - this.o.maxFailures);
    this.failures.delete(key);
    this.failures.set(key, list);
    if (this.failures.size > this.maxKeys) {
      const oldest = this.failures.keys().next().value;
      if (oldest !== undefined) this.failures.delete(oldest);
    }
  }

  /** Failures of `key` still inside the window. */
  count(key: string): number {
    return this.recent(key).length;
  }

  private recent(key: string): number[] {
    const list = this.failures.get(key);
    if (!list) return [];
    const since = this.o.clockMs() - this.o.windowMs;
    const kept = list.filter((t) => t > since);
    if (kept.length === 0) this.failures.delete(key);
    else this.failures.set(key, kept);
    return kept;
  }
}
