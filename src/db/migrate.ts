import { fromSqliteError } from './errors.js';
import type { Database } from 'better-sqlite3';
import { DepotsyncError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * A versioned schema step (docs/contributing.md). The schema version lives in SQLite's `PRAGMA user_version`;
 * migration N takes the database from version N-1 to N inside one transaction, so a crash mid-way
 * leaves the previous version intact. Migrations are append-only: never edit a released one.
 */
export interface Migration {
  version: number;
  name: string;
  up: string | ((db: Database) => void);
}

/** Check that versions run 1, 2, 3, … without gaps or repeats, and each step has a name. */
export function validateMigrations(migrations: readonly Migration[], what: string): void {
  const problems: string[] = [];
  migrations.forEach((m, i) => {
    if (m.version !== i + 1)
      problems.push(`migration #${i + 1} has version ${JSON.stringify(m.version)}, expected ${i + 1}`);
    if (typeof m.name !== 'string' || m.name.trim() === '')
      problems.push(`migration v${m.version} has no name`);
    if (typeof m.up !== 'string' && typeof m.up !== 'function')
      problems.push(`migration v${m.version} has no up step`);
  });
  if (problems.length)
    throw new DepotsyncError('internal', `${what}: invalid migration list: ${problems.join('; ')}`);
}

export function schemaVersion(db: Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * Apply every migration newer than the database's version. Refuses a database whose version is newer
 * than the code knows: an older depotsync writing into a newer schema could silently corrupt it.
 * Each step re-reads the version under the write lock (BEGIN IMMEDIATE), so two processes opening the
 * same new database at once do not both run a step.
 */
export function applyMigrations(
  db: Database,
  migrations: readonly Migration[],
  what: string,
  logger: Logger,
): number {
  validateMigrations(migrations, what);
  const known = migrations.length;
  const refuseNewer = (found: number): never => {
    throw new DepotsyncError(
      'conflict',
      `${what}: database schema v${found} is newer than this depotsync (knows v${known})`,
      {
        hint: 'upgrade depotsync',
      },
    );
  };
  const start = schemaVersion(db);
  if (start > known) refuseNewer(start);
  for (const m of migrations) {
    if (m.version <= start) continue;
    const step = db.transaction(() => {
      const current = schemaVersion(db);
      if (current > known) refuseNewer(current);
      if (current >= m.version) return false;
      if (typeof m.up === 'string') db.exec(m.up);
      else m.up(db);
      db.pragma(`user_version = ${m.version}`);
      return true;
    });
    try {
      if (step.immediate()) logger.info({ version: m.version, migration: m.name }, 'database migrated');
    } catch (e) {
      if (e instanceof DepotsyncError) throw e;
      if ((e as { code?: unknown })?.code === 'SQLITE_FULL')
        throw fromSqliteError(e, `${what}: migration v${m.version} (${m.name})`);
      throw new DepotsyncError(
        'internal',
        `${what}: migration v${m.version} (${m.name}) failed: ${(e as Error).message}`,
        {
          hint: 'the database was left at the previous schema version; report this with the log',
          cause: e,
        },
      );
    }
  }
  return schemaVersion(db);
}
