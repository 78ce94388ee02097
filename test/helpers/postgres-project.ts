import type { TestProject } from 'vitest/node';
import { openPostgresSql } from '../../src/db/postgres-sql.js';
import { silentLogger } from '../../src/log.js';
import { POSTGRES_MASTER_MIGRATIONS } from '../../master/db/schema-postgres.js';
import { startPostgres } from './postgres.js';

/** The database every catalog test's own database is copied from: migrated once, never connected to after. */
export const MASTER_DB_TEMPLATE = 'depotsync_master_template';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the `postgres` database of the project's throw-away cluster (postgres project only). */
    postgresAdminUrl: string;
  }
}

/**
 * globalSetup of the `postgres` test project (vitest.config.ts): one throw-away cluster for all its files,
 * with the master's schema migrated into a template database once, so a test's fresh database is a copy
 * (CREATE DATABASE … TEMPLATE) instead of a migration run.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cluster = await startPostgres();
  try {
    await cluster.query(`CREATE DATABASE ${MASTER_DB_TEMPLATE}`);
    const sql = await openPostgresSql(cluster.url(MASTER_DB_TEMPLATE), {
      logger: silentLogger(),
      migrations: POSTGRES_MASTER_MIGRATIONS,
    });
    await sql.close();
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  project.provide('postgresAdminUrl', cluster.url());
  return () => cluster.stop();
}
