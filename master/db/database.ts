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
export function nowIso(m: MasterDb): string {
  return m.now().toISOString();
}
