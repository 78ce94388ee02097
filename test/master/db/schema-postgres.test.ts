import BetterSqlite3 from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../../src/db/open.js';
import { openPostgresSql, postgresSchemaVersion, type PostgresSql } from '../../../src/db/postgres-sql.js';
import type { Sql } from '../../../src/db/sql.js';
import { SqliteSql } from '../../../src/db/sqlite-sql.js';
import { silentLogger } from '../../../src/log.js';
import { describeTables, foreignKeyOrder } from '../../../master/db/schema-info.js';
import { POSTGRES_MASTER_MIGRATIONS } from '../../../master/db/schema-postgres.js';
import { MASTER_MIGRATIONS } from '../../../master/db/schema.js';
import { startPostgres, type PgCluster } from '../../helpers/postgres.js';

let cluster: PgCluster;
let dir: string;
let pgSql: PostgresSql;
let sqlite: Sql;

beforeAll(async () => {
  cluster = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), 'depotsync-schema-'));
  const db = openDatabase(join(dir, 'master.db'), { migrations: MASTER_MIGRATIONS, logger: silentLogger() });
  sqlite = new SqliteSql(db, `database ${join(dir, 'master.db')}`);
  pgSql = await openPostgresSql(await cluster.createDatabase('schema'), {
    logger: silentLogger(),
    migrations: POSTGRES_MASTER_MIGRATIONS,
  });
});
afterAll(async () => {
  await pgSql?.close();
  await sqlite?.close();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Tables whose SQLite integer key is numbered by the code (never omitted), so PostgreSQL has no identity. */
const NUMBERED_BY_CODE = new Set(['generations', 'signer_lease']);

describe('the PostgreSQL schema', () => {
  it('has the version of the SQLite schema (every SQLite migration has a PostgreSQL twin)', async () => {
    expect(await postgresSchemaVersion(pgSql)).toBe(MASTER_MIGRATIONS.length);
    expect(POSTGRES_MASTER_MIGRATIONS.at(-1)!.version).toBe(MASTER_MIGRATIONS.length);
  });

  it('has the same tables, columns, NOT NULLs, primary keys, references and identity keys as SQLite', async () => {
    const [lite, pg] = [await describeTables(sqlite), await describeTables(pgSql)];
    expect(pg.map((t) => t.name)).toEqual(lite.map((t) => t.name));
    for (const l of lite) {
      const p = pg.find((t) => t.name === l.name)!;
      expect(p.columns, l.name).toEqual(l.columns);
      expect(p.primaryKey, l.name).toEqual(l.primaryKey);
      expect([...p.references].sort(), l.name).toEqual([...l.references].sort());
      expect(p.identity, l.name).toBe(NUMBERED_BY_CODE.has(l.name) ? undefined : l.identity);
    }
    // The copy order puts referenced tables first.
    const order = foreignKeyOrder(pg).map((t) => t.name);
    expect(order.indexOf('generations')).toBeLessThan(order.indexOf('package_versions'));
    expect(order.indexOf('machines')).toBeLessThan(order.indexOf('depot_status'));
  });

  it('has the same named indexes', async () => {
    const lite = (
      await sqlite.all<{ name: string }>(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      )
    ).map((r) => r.name);
    const pg = (
      await pgSql.all<{ name: string }>(
        `SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()
           AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key' ORDER BY indexname`,
      )
    ).map((r) => r.name);
    expect(pg).toEqual(lite);
  });

  it('enforces the same CHECKs, JSON validity included, as conflicts', async () => {
    for (const s of [sqlite, pgSql]) {
      await expect(
        s.run('INSERT INTO audit_log (at, actor, action, detail) VALUES (?, ?, ?, ?)', [
          't',
          'a',
          'x',
          '{nope',
        ]),
        s.dialect,
      ).rejects.toMatchObject({ code: 'conflict' });
      await expect(
        s.run(
          "INSERT INTO machines (name, role, state, requested_at, state_changed_at) VALUES (?, 'printer', 'pending', 't', 't')",
          ['m1'],
        ),
        s.dialect,
      ).rejects.toMatchObject({ code: 'conflict' });
      const ok = await s.get<{ id: number }>(
        'INSERT INTO audit_log (at, actor, action, detail) VALUES (?, ?, ?, ?) RETURNING id',
        ['t', 'a', 'x', '{"k":1}'],
      );
      expect(typeof ok!.id, s.dialect).toBe('number');
    }
  });

  it('reopens without migrating again, and sorts text bytewise as SQLite does', async () => {
    const again = await openPostgresSql(cluster.url(new URL(pgSql.what.split(' ')[1]!).pathname.slice(1)), {
      logger: silentLogger(),
      migrations: POSTGRES_MASTER_MIGRATIONS,
    });
    expect(await postgresSchemaVersion(again)).toBe(MASTER_MIGRATIONS.length);
    for (const name of ['b', 'B', 'a', '_z', 'é'])
      await again.run('INSERT INTO packages (name, created_at) VALUES (?, ?)', [name, 't']);
    const names = (await again.all<{ name: string }>('SELECT name FROM packages ORDER BY name')).map(
      (r) => r.name,
    );
    const lite = new BetterSqlite3(':memory:');
    lite.exec('CREATE TABLE p (name TEXT)');
    for (const name of ['b', 'B', 'a', '_z', 'é']) lite.prepare('INSERT INTO p VALUES (?)').run(name);
    expect(names).toEqual(
      (lite.prepare('SELECT name FROM p ORDER BY name').all() as { name: string }[]).map((r) => r.name),
    );
    lite.close();
    await again.close();
  });
});
