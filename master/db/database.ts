import type { Statement } from 'better-sqlite3';
import { openDatabase, type Database } from '../../src/db/open.js';
import type { Logger } from '../../src/log.js';
import { MASTER_MIGRATIONS } from './schema.js';

/**
 * The master's open database and the clock its records are stamped with. Every function in
 * master/db takes this as its first argument; tests inject a clock instead of sleeping.
 *
 * Use one MasterDb per process: better-sqlite3 is synchronous, so a function here never interleaves
 * with another; a multi-step change is wrapped in `transaction` (src/db/transaction.ts), whose
 * function must not `await`.
 */
export interface MasterDb {
  readonly db: Database;
  readonly now: () => Date;
  readonly logger: Logger;
  close(): void;
}

export interface OpenMasterDbOptions {
  logger: Logger;
  now?: () => Date;
  busyTimeoutMs?: number;
}

export function openMasterDatabase(path: string, opts: OpenMasterDbOptions): MasterDb {
  const db = openDatabase(path, {
    migrations: MASTER_MIGRATIONS,
    logger: opts.logger,
    ...(opts.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: opts.busyTimeoutMs }),
  });
  return {
    db,
    now: opts.now ?? (() => new Date()),
    logger: opts.logger.child({ component: 'master.db' }),
    close: () => db.close(),
  };
}

/** The current time as stored: ISO-8601 UTC with milliseconds. */
const statements = new WeakMap<Database, Map<string, Statement>>();

/**
 * A prepared statement, prepared once per connection: for queries on the hot path of every request
 * (the mutual-TLS gate looks a machine up by certificate serial each time), where `db.prepare` would
 * cost more than the query itself.
 */
export function statement(m: MasterDb, sql: string): Statement {
  let cache = statements.get(m.db);
  if (!cache) statements.set(m.db, (cache = new Map<string, Statement>()));
  let st = cache.get(sql);
  if (!st) cache.set(sql, (st = m.db.prepare(sql)));
  return st;
}

export function nowIso(m: MasterDb): string {
  return m.now().toISOString();
}
