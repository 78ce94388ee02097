import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { openPostgresSql } from '../../src/db/postgres-sql.js';
import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { MasterConfig } from '../config.js';
import { masterDbOver, openMasterDatabase, type MasterDb } from '../db/database.js';
import { POSTGRES_MASTER_MIGRATIONS } from '../db/schema-postgres.js';
import type { MasterLayout } from '../layout.js';

/**
 * The catalog master.json names: SQLite in M/master.db (database.url empty), or the PostgreSQL database
 * at database.url, shared by several masters (docs/operations.md, "Several masters").
 */
export async function openMasterCatalog(
  layout: MasterLayout,
  config: MasterConfig,
  opts: { logger: Logger; now?: () => Date },
): Promise<MasterDb> {
  const o = { logger: opts.logger, ...(opts.now ? { now: opts.now } : {}) };
  if (config.database.url === '') return openMasterDatabase(layout.database, o);
  const url = databaseUrl(layout, config);
  const sql = await openPostgresSql(url, { logger: opts.logger, migrations: POSTGRES_MASTER_MIGRATIONS });
  // `file` is where M/master.db would be: the TOTP key is found beside it (M/keys/totp.key).
  return masterDbOver(sql, { ...o, file: layout.database });
}

/** database.url with the password of database.passwordFile put in (when set). */
export function databaseUrl(layout: MasterLayout, config: MasterConfig): string {
  const { url, passwordFile } = config.database;
  if (passwordFile === '') return url;
  const path = resolve(layout.dir, passwordFile);
  let password: string;
  try {
    password = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new DepotsyncError('not-found', `master.json: database.passwordFile ${path} cannot be read`, {
      hint: 'create it (one line: the PostgreSQL password, mode 0600) or correct the path',
      cause: e,
    });
  }
  if (password === '') {
    throw new DepotsyncError('bad-input', `master.json: database.passwordFile ${path} is empty`);
  }
  const u = new URL(url);
  u.password = encodeURIComponent(password);
  return u.toString();
}
