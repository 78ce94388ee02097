import { setTimeout as delay } from 'node:timers/promises';
import type Database from 'better-sqlite3';
import { DepotsyncError } from '../errors.js';

/**
 * The store's single-writer lock, in two layers:
 *  - in this process, a promise chain, so one batch (or GC step) at a time uses the connection's
 *    transaction;
 *  - across processes (a `depot sync` command while `depot serve` runs), SQLite's write lock taken
 *    with BEGIN IMMEDIATE and held while the pack is appended and fsynced, so two writers never
 *    append at the same pack offset. Taking it does not block the event loop: on SQLITE_BUSY it
 *    waits asynchronously and tries again until `timeoutMs`.
 */
export class WriteLock {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: Database.Database,
    private readonly timeoutMs: number,
    private readonly what: string,
  ) {}

  /** Run `fn` holding the in-process lock only (no SQLite transaction). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /**
   * Run `fn` inside BEGIN IMMEDIATE … COMMIT while holding the in-process lock. `fn` may await (the
   * pack append and fsync happen there); a throw rolls back.
   */
  transaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.exclusive(() => this.inTransaction(fn));
  }

  /** Like `transaction`, for a caller that already holds the in-process lock (GC's steps). */
  async inTransaction<T>(fn: () => Promise<T>): Promise<T> {
    await this.begin();
    try {
      const out = await fn();
      this.db.exec('COMMIT');
      return out;
    } catch (e) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw e;
    }
  }

  /**
   * Synchronous start-up work that needs the cross-process lock (dropping uncommitted pack tails):
   * runs `fn` inside BEGIN IMMEDIATE when the lock is free right now and returns true; returns false
   * without running it when another process is writing (its tail is not garbage).
   */
  tryNow(fn: () => void): boolean {
    try {
      this.tryBegin();
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_BUSY') return false;
      throw e;
    }
    try {
      fn();
      this.db.exec('COMMIT');
      return true;
    } catch (e) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw e;
    }
  }

  private async begin(): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    let waitMs = 2;
    for (;;) {
      try {
        this.tryBegin();
        return;
      } catch (e) {
        if ((e as { code?: string }).code !== 'SQLITE_BUSY') throw e;
        if (Date.now() >= deadline) {
          throw new DepotsyncError(
            'timeout',
            `${this.what}: another process held the write lock for more than ${this.timeoutMs} ms`,
            {
              hint: 'another depotsync process is writing to the same store; wait for it to finish and try again',
              cause: e,
            },
          );
        }
        await delay(waitMs);
        waitMs = Math.min(waitMs * 2, 100);
      }
    }
  }

  /** One non-blocking attempt (busy_timeout 0 just for it, so readers keep their normal timeout). */
  private tryBegin(): void {
    const saved = this.db.pragma('busy_timeout', { simple: true }) as number;
    this.db.pragma('busy_timeout = 0');
    try {
      this.db.exec('BEGIN IMMEDIATE');
    } finally {
      this.db.pragma(`busy_timeout = ${saved}`);
    }
  }
}
