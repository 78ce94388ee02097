import { AsyncLocalStorage } from 'node:async_hooks';
import { openDatabase, type Database } from '../../src/db/open.js';
import type { Sql } from '../../src/db/sql.js';
import { SqliteSql } from '../../src/db/sqlite-sql.js';
import type { Logger } from '../../src/log.js';
import { MASTER_MIGRATIONS } from './schema.js';

/**
 * The master's catalog database and the clock its records are stamped with. Every function in
 * master/db takes this as its first argument; tests inject a clock instead of sleeping.
 *
 * All access goes through `sql` (src/db/sql.ts), so the same code runs on SQLite (the default, opened
 * here) and on PostgreSQL (another Sql passed to `masterDbOver`). A multi-step change is wrapped in
 * `transaction(m, fn)` below; queries issued from `fn`'s asynchronous context join it.
 */
export interface MasterDb {
  readonly sql: Sql;
  readonly now: () => Date;
  readonly logger: Logger;
  /**
   * The SQLite file, or for another backend where it would be (`M/master.db`): key files kept with the
   * catalog (`M/keys/totp.key`) are found beside it. Absent for a database in memory.
   */
  readonly file?: string;
  /**
   * Several masters on one catalog: checked inside every transaction that commits signed metadata (a
   * generation, a timestamp), so only the signer-lease holder commits (master/ha/signer.ts). Absent on a
   * single master.
   */
  fence?: () => Promise<void>;
  close(): Promise<void>;
}

export interface OpenMasterDbOptions {
  logger: Logger;
  now?: () => Date;
  busyTimeoutMs?: number;
}

/** A MasterDb over an already migrated Sql of any backend (the caller hands ownership to it). */
export function masterDbOver(sql: Sql, opts: { logger: Logger; now?: () => Date; file?: string }): MasterDb {
  return {
    sql,
    now: opts.now ?? (() => new Date()),
    logger: opts.logger.child({ component: 'master.db' }),
    ...(opts.file === undefined || opts.file === ':memory:' || opts.file === '' ? {} : { file: opts.file }),
    close: () => sql.close(),
  };
}

/** Open (create, migrate) the master's SQLite database at `path`. */
export function openMasterDatabase(path: string, opts: OpenMasterDbOptions): MasterDb {
  const db = openDatabase(path, {
    migrations: MASTER_MIGRATIONS,
    logger: opts.logger,
    ...(opts.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: opts.busyTimeoutMs }),
  });
  return masterDbOver(new SqliteSql(db, `database ${path}`, path), { ...opts, file: path });
}

/**
 * The SQLite connection under `m`, or undefined on another backend. Only for what has no portable form
 * (the online backup API); every caller says what it does without it.
 */
export function sqliteHandle(m: MasterDb): Database | undefined {
  return m.sql instanceof SqliteSql ? m.sql.db : undefined;
}

/** Marks the asynchronous context of a `transaction(m, …)`, so catalog changes can insist on one. */
const inside = new AsyncLocalStorage<MasterDb>();

/**
 * Run `fn` in one write transaction of `m` (nested: a savepoint) and return its result; a throw rolls it
 * back. Keep `fn` to database work: it holds the writer lock while it awaits.
 */
export function transaction<T>(m: MasterDb, fn: () => Promise<T>): Promise<T> {
  return m.sql.transaction(() => inside.run(m, fn));
}

/**
 * Run `fn` in one read-only transaction of `m`: all its reads see one moment of the database, without the
 * writer lock (on PostgreSQL other masters and report commits go on meanwhile). Writes inside are refused.
 */
export function readTransaction<T>(m: MasterDb, fn: () => Promise<T>): Promise<T> {
  return m.sql.readTransaction(fn);
}

/** True inside `transaction(m, …)`'s asynchronous context. */
export function inTransaction(m: MasterDb): boolean {
  return inside.getStore() === m;
}

/** The current time as stored: ISO-8601 UTC with milliseconds. */
export function nowIso(m: MasterDb): string {
  return m.now().toISOString();
}
