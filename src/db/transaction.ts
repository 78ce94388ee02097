import type { Database } from 'better-sqlite3';

/**
 * Run `fn` in one write transaction and return its result; any throw rolls everything back.
 *
 * BEGIN IMMEDIATE takes the write lock up front: in WAL mode a deferred transaction that reads and then
 * writes can fail with SQLITE_BUSY_SNAPSHOT when another process committed in between, which the busy
 * timeout does not retry. Nested calls become savepoints (better-sqlite3), so a helper that uses
 * `transaction` can itself be called inside a larger one. `fn` must be synchronous: better-sqlite3
 * refuses a function that returns a promise, because an `await` would let other work interleave.
 */
export function transaction<T>(db: Database, fn: () => T): T {
  return db.transaction(fn).immediate();
}
