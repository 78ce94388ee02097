import BetterSqlite3, { type Database } from 'better-sqlite3';
import { DepotsyncError } from '../errors.js';
import type { Logger } from '../log.js';
import { fromSqliteError } from './errors.js';
import { applyMigrations, type Migration } from './migrate.js';

export type { Database } from 'better-sqlite3';
export type { Migration } from './migrate.js';

export interface OpenDatabaseOptions {
  migrations: readonly Migration[];
  logger: Logger;
  /** How long a statement waits for another process's write lock before failing. */
  busyTimeoutMs?: number;
}

export const DB_DEFAULTS = {
  busyTimeoutMs: 5_000,
} as const;

/** SQLite's value for `PRAGMA synchronous = FULL`. */
const SYNCHRONOUS_FULL = 2;

/**
 * Open (or create) a SQLite database the way every depotsync role needs it:
 * - WAL journal: readers never block the writer, so serving continues during a publish or sync;
 * - `synchronous = FULL` on EVERY open: better-sqlite3 builds SQLite with a WAL default of NORMAL, so a
 *   reopened WAL database would otherwise drop to NORMAL, and a commit (a published generation, a
 *   switched served generation) could be lost on power failure. Read back and checked;
 * - foreign keys enforced; a busy timeout for a second process;
 * - schema migrations from `user_version` (see migrate.ts), refusing a newer schema.
 * The caller owns the handle and closes it.
 */
export function openDatabase(path: string, opts: OpenDatabaseOptions): Database {
  const what = `database ${path}`;
  const busyTimeoutMs = opts.busyTimeoutMs ?? DB_DEFAULTS.busyTimeoutMs;
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
    throw new DepotsyncError(
      'bad-input',
      `openDatabase: option busyTimeoutMs must be a non-negative integer, got ${JSON.stringify(busyTimeoutMs)}`,
    );
  }
  const log = opts.logger.child({ component: 'db' });
  let db: Database;
  try {
    db = new BetterSqlite3(path);
  } catch (e) {
    if (/directory does not exist/i.test((e as Error)?.message ?? '')) {
      throw new DepotsyncError('not-found', `${what}: the directory does not exist`, {
        hint: 'create it first (init creates it)',
        cause: e,
      });
    }
    throw fromSqliteError(e, what, path);
  }
  try {
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (String(mode).toLowerCase() !== 'wal') {
      throw new DepotsyncError(
        'io',
        `${what}: cannot use write-ahead logging (journal_mode is ${String(mode)})`,
        {
          hint: 'put the directory on a local file system that supports shared memory (not a network share)',
        },
      );
    }
    // Set after journal_mode: entering WAL applies the WAL default to a connection that has not set it.
    db.pragma('synchronous = FULL');
    const sync = db.pragma('synchronous', { simple: true });
    if (sync !== SYNCHRONOUS_FULL) {
      throw new DepotsyncError(
        'internal',
        `${what}: PRAGMA synchronous reads ${String(sync)} after setting FULL (2)`,
      );
    }
    db.pragma('foreign_keys = ON');
    const version = applyMigrations(db, opts.migrations, what, log);
    log.debug({ path, version }, 'database open');
    return db;
  } catch (e) {
    db.close();
    throw fromSqliteError(e, what, path);
  }
}
