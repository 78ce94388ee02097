import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import { openPostgresSql } from '../../src/db/postgres-sql.js';
import { silentLogger } from '../../src/log.js';
import { masterDbOver, openMasterDatabase, type MasterDb } from '../../master/db/database.js';
import { MASTER_DB_TEMPLATE } from './postgres-project.js';

/**
 * The one way the master's catalog tests get a database: a fresh one, on a temporary SQLite file by
 * default, or on PostgreSQL when the test runs in the `postgres` project (vitest.config.ts sets
 * DEPOTSYNC_TEST_DB=postgres there and its globalSetup starts the cluster). The tests use only the
 * MasterDb (its `sql`, never a SQLite handle), so the same files run on both backends.
 */
export interface TestMasterDb {
  m: MasterDb;
  /** A folder of the test's own (removed by `cleanup`). */
  dir: string;
  /** Close and open the same database again (what a restarted master sees). */
  reopen(): Promise<MasterDb>;
  /** A second connection to the same database (what another master process sees); the caller closes it. */
  another(): Promise<MasterDb>;
  cleanup(): Promise<void>;
}

/** The backend the catalog tests of this worker run on. */
export function testBackend(): 'sqlite' | 'postgres' {
  return process.env['DEPOTSYNC_TEST_DB'] === 'postgres' ? 'postgres' : 'sqlite';
}

let databases = 0;
/** The next test's database, created while the current test runs (a copy takes a few hundred ms under load). */
let nextDatabase: Promise<string> | undefined;

async function freshDatabase(admin: string): Promise<string> {
  const create = async () => {
    const name = `master_${process.pid}_${++databases}`;
    await adminQuery(admin, `CREATE DATABASE ${name} TEMPLATE ${MASTER_DB_TEMPLATE}`);
    return name;
  };
  const name = await (nextDatabase ?? create());
  nextDatabase = create();
  // Not awaited here; a failure surfaces when the next test takes it.
  nextDatabase.catch(() => undefined);
  return name;
}

export async function openTestMasterDb(opts: { now?: () => Date } = {}): Promise<TestMasterDb> {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-master-db-'));
  const path = join(dir, 'master.db');
  const clock = opts.now ? { now: opts.now } : {};
  let open: () => Promise<MasterDb>;
  let drop = async (): Promise<void> => undefined;
  if (testBackend() === 'postgres') {
    const admin = inject('postgresAdminUrl');
    const name = await freshDatabase(admin);
    const url = new URL(admin);
    url.pathname = `/${name}`;
    open = async () =>
      masterDbOver(await openPostgresSql(url.href, { logger: silentLogger() }), {
        logger: silentLogger(),
        ...clock,
        file: path,
      });
    drop = () => adminQuery(admin, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } else {
    open = () => Promise.resolve(openMasterDatabase(path, { logger: silentLogger(), ...clock }));
  }
  let closed = false;
  const t: TestMasterDb = {
    m: await open(),
    dir,
    async reopen() {
      await t.m.close();
      t.m = await open();
      return t.m;
    },
    another: () => open(),
    async cleanup() {
      if (!closed) await t.m.close().catch(() => undefined);
      closed = true;
      await drop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}
