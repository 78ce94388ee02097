import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, statSync } from 'node:fs';
import { writeFileAtomicSync } from '../../src/fs/atomic-write.js';
import { openDatabase } from '../../src/db/open.js';
import { describeUrl, openPostgresSql } from '../../src/db/postgres-sql.js';
import type { Sql, SqlValue } from '../../src/db/sql.js';
import { SqliteSql } from '../../src/db/sqlite-sql.js';
import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { acquireMasterLock } from '../backup/lock.js';
import { loadMasterConfig } from '../config.js';
import { masterLayout, type MasterLayout } from '../layout.js';
import { describeTables, foreignKeyOrder, type TableInfo } from './schema-info.js';
import { POSTGRES_MASTER_MIGRATIONS } from './schema-postgres.js';
import { MASTER_MIGRATIONS } from './schema.js';

/**
 * `master migrate`: move a stopped master's catalog between SQLite (M/master.db) and PostgreSQL
 * (database.url in M/master.json), table by table through the Sql interface, in one transaction on the
 * target. The target must be empty; afterwards row counts of every table and a hash of the signed metadata
 * (metadata_files) are compared on both sides, and only then does master.json name the new database.
 * Moving to PostgreSQL renames master.db (kept, never deleted) so no master keeps writing the old copy.
 */
export interface MigrateResult {
  from: string;
  to: string;
  tables: { name: string; rows: number }[];
  metadataSha256: string;
  /** Where the old SQLite file went (to PostgreSQL only). */
  keptSqlite: string | undefined;
  durationMs: number;
}

/** Rows read and written per statement (under both backends' parameter limits). */
const BATCH_VALUES = 20_000;

export async function migrateBackend(dir: string, to: string, o: { logger: Logger }): Promise<MigrateResult> {
  const started = Date.now();
  const layout = masterLayout(dir);
  if (!existsSync(layout.config)) {
    throw new DepotsyncError('not-found', `master migrate: ${layout.config} does not exist`, {
      hint: 'give the folder of an initialized master with --dir',
    });
  }
  const config = loadMasterConfig(layout.config);
  // Refused while this folder's master serves (other masters on a shared database must be stopped by the operator).
  const lock = acquireMasterLock(layout.dir, 'migrate');
  try {
    return await migrateLocked(layout, config.database.url, to, o, started);
  } finally {
    lock.release();
  }
}

async function migrateLocked(
  layout: MasterLayout,
  fromUrl: string,
  to: string,
  o: { logger: Logger },
  started: number,
): Promise<MigrateResult> {
  const toSqlite = to === 'sqlite';
  if (!toSqlite) describeUrl(to);
  if (toSqlite && fromUrl === '') {
    throw new DepotsyncError(
      'bad-input',
      `master migrate: the catalog of ${layout.dir} is already in SQLite`,
      {
        hint: 'give --to postgres://user:password@host:5432/database to move it to PostgreSQL',
      },
    );
  }
  if (!toSqlite && fromUrl !== '' && describeUrl(fromUrl) === describeUrl(to)) {
    throw new DepotsyncError('bad-input', `master migrate: the catalog is already in ${describeUrl(to)}`);
  }
  if (fromUrl === '' && !existsSync(layout.database)) {
    throw new DepotsyncError('not-found', `master migrate: ${layout.database} does not exist`);
  }
  const log = o.logger.child({ component: 'master.migrate' });
  const kept = `${layout.database}.before-postgres`;
  if (toSqlite && existsSync(layout.database) && statSync(layout.database).size > 0) {
    throw new DepotsyncError('conflict', `master migrate: ${layout.database} already exists`, {
      hint: `move it away first (it may be the copy kept from before the move to PostgreSQL); nothing was changed`,
    });
  }
  if (!toSqlite && fromUrl === '' && existsSync(kept)) {
    throw new DepotsyncError('conflict', `master migrate: ${kept} exists from an earlier migration`, {
      hint: 'move it away first; nothing was changed',
    });
  }

  const openSqlite = () =>
    new SqliteSql(
      openDatabase(layout.database, { migrations: MASTER_MIGRATIONS, logger: log }),
      `database ${layout.database}`,
    );
  const openPg = (url: string) =>
    openPostgresSql(url, { logger: log, migrations: POSTGRES_MASTER_MIGRATIONS, statementTimeoutMs: 0 });

  let source: Sql | undefined;
  let target: Sql | undefined;
  try {
    source = fromUrl === '' ? openSqlite() : await openPg(fromUrl);
    if (!toSqlite) await refuseNonEmptyPostgres(to, log);
    target = toSqlite ? openSqlite() : await openPg(to);
    if (await hasRows(target)) {
      throw new DepotsyncError('conflict', `master migrate: ${target.what} is not empty`, {
        hint: 'migrate into a new, empty database (createdb); nothing was changed',
      });
    }
    const tables = await copyAll(source, target, log);
    const [a, b] = [await metadataHash(source), await metadataHash(target)];
    if (a !== b) {
      throw new DepotsyncError(
        'corrupt',
        `master migrate: the signed metadata differs after the copy (${a} ≠ ${b})`,
        {
          hint: 'report this with the log; master.json still names the old database',
        },
      );
    }
    for (const t of tables) {
      const n = await countRows(target, t.name);
      if (n !== t.rows) {
        throw new DepotsyncError(
          'corrupt',
          `master migrate: ${t.name} has ${n} rows in ${target.what}, ${t.rows} in ${source.what}`,
          {
            hint: 'report this with the log; master.json still names the old database',
          },
        );
      }
    }
    await source.close();
    source = undefined;
    await target.close();
    target = undefined;
    // Only after the verification: the master now uses the new database.
    const raw = JSON.parse(readFileSync(layout.config, 'utf8')) as Record<string, unknown>;
    if (toSqlite) delete raw.database;
    else raw.database = { url: to };
    writeFileAtomicSync(layout.config, JSON.stringify(raw, null, 2) + '\n', { mode: 0o600 });
    let keptSqlite: string | undefined;
    if (!toSqlite && fromUrl === '') {
      renameSync(layout.database, kept);
      for (const ext of ['-wal', '-shm']) {
        if (existsSync(layout.database + ext)) renameSync(layout.database + ext, kept + ext);
      }
      keptSqlite = kept;
    }
    const result = {
      from: fromUrl === '' ? `database ${layout.database}` : describeUrl(fromUrl),
      to: toSqlite ? `database ${layout.database}` : describeUrl(to),
      tables,
      metadataSha256: a,
      keptSqlite,
      durationMs: Date.now() - started,
    };
    log.info({ from: result.from, to: result.to, durationMs: result.durationMs }, 'catalog migrated');
    return result;
  } finally {
    await source?.close().catch(() => undefined);
    await target?.close().catch(() => undefined);
  }
}

/** Refuse a PostgreSQL database that holds any table with rows, before our schema is created in it. */
async function refuseNonEmptyPostgres(url: string, log: Logger): Promise<void> {
  const s = await openPostgresSql(url, { logger: log });
  try {
    if (await hasRows(s)) {
      throw new DepotsyncError('conflict', `master migrate: ${s.what} is not empty`, {
        hint: 'migrate into a new, empty database (createdb); nothing was changed',
      });
    }
  } finally {
    await s.close();
  }
}

/** Does any table (catalog or not) hold a row? The schema version bookkeeping does not count. */
async function hasRows(s: Sql): Promise<boolean> {
  const names =
    s.dialect === 'postgres'
      ? await s.all<{ name: string }>(
          `SELECT table_name AS name FROM information_schema.tables
            WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`,
        )
      : await s.all<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        );
  for (const { name } of names) {
    if (name === 'schema_version') continue;
    if (await s.get(`SELECT 1 AS x FROM ${quote(name)} LIMIT 1`)) return true;
  }
  return false;
}

function quote(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

async function countRows(s: Sql, table: string): Promise<number> {
  return (await s.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${quote(table)}`))!.n;
}

/**
 * Copy every table, referenced tables first, in one transaction on the target; then move the target's
 * identity sequences past the copied keys (PostgreSQL), so the next row gets a fresh id.
 */
async function copyAll(source: Sql, target: Sql, log: Logger): Promise<{ name: string; rows: number }[]> {
  const [from, into] = [await describeTables(source), await describeTables(target)];
  const names = (ts: TableInfo[]) => ts.map((t) => t.name).join(',');
  if (names(from) !== names(into)) {
    throw new DepotsyncError(
      'internal',
      `master migrate: the two schemas have different tables (${names(from)} / ${names(into)})`,
    );
  }
  const out: { name: string; rows: number }[] = [];
  await target.transaction(async () => {
    for (const t of foreignKeyOrder(into)) {
      const src = from.find((f) => f.name === t.name)!;
      const cols = t.columns.map((c) => c.name);
      if (src.columns.map((c) => c.name).join(',') !== cols.join(',')) {
        throw new DepotsyncError(
          'internal',
          `master migrate: ${t.name} has different columns on the two sides`,
        );
      }
      const order = (t.primaryKey.length ? t.primaryKey : cols).map(quote).join(', ');
      const perBatch = Math.max(1, Math.floor(BATCH_VALUES / cols.length));
      const list = cols.map(quote).join(', ');
      let rows = 0;
      for (let offset = 0; ; offset += perBatch) {
        const batch = await source.all<Record<string, SqlValue>>(
          `SELECT ${list} FROM ${quote(t.name)} ORDER BY ${order} LIMIT ? OFFSET ?`,
          [perBatch, offset],
        );
        if (batch.length === 0) break;
        const tuple = `(${cols.map(() => '?').join(', ')})`;
        await target.run(
          `INSERT INTO ${quote(t.name)} (${list}) VALUES ${batch.map(() => tuple).join(', ')}`,
          batch.flatMap((r) => cols.map((c) => r[c] ?? null)),
        );
        rows += batch.length;
        if (batch.length < perBatch) break;
      }
      if (target.dialect === 'postgres' && t.identity) {
        await target.get(
          `SELECT setval(pg_get_serial_sequence(?, ?), COALESCE((SELECT MAX(${quote(t.identity)}) FROM ${quote(t.name)}), 0) + 1, false) AS v`,
          [t.name, t.identity],
        );
      }
      log.debug({ table: t.name, rows }, 'table copied');
      out.push({ name: t.name, rows });
    }
  });
  return out;
}

/** SHA-256 over every signed metadata file (name, role, version, generation and content), in name order. */
export async function metadataHash(s: Sql): Promise<string> {
  const h = createHash('sha256');
  const rows = await s.all<{
    name: string;
    role: string;
    version: number;
    generation: number | null;
    bytes: Buffer;
  }>('SELECT name, role, version, generation, bytes FROM metadata_files ORDER BY name');
  for (const r of rows) {
    h.update(JSON.stringify([r.name, r.role, r.version, r.generation, r.bytes.length]));
    h.update(r.bytes);
  }
  return h.digest('hex');
}
