import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../../src/db/open.js';
import { openPostgresSql } from '../../../src/db/postgres-sql.js';
import type { Sql } from '../../../src/db/sql.js';
import { SqliteSql } from '../../../src/db/sqlite-sql.js';
import { silentLogger } from '../../../src/log.js';
import { metadataHash, migrateBackend } from '../../../master/db/migrate-backend.js';
import { POSTGRES_MASTER_MIGRATIONS } from '../../../master/db/schema-postgres.js';
import { MASTER_MIGRATIONS } from '../../../master/db/schema.js';
import { startPostgres, type PgCluster } from '../../helpers/postgres.js';

let cluster: PgCluster;
let root: string;
beforeAll(async () => {
  cluster = await startPostgres();
  root = mkdtempSync(join(tmpdir(), 'depotsync-migrate-'));
});
afterAll(async () => {
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
});

let n = 0;
/** A stopped master's folder with a SQLite catalog holding rows in most tables (ids with gaps). */
async function sqliteMaster(): Promise<string> {
  const dir = join(root, `m${++n}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'master.json'), JSON.stringify({ name: 'm', bins: 16 }, null, 2));
  const s = new SqliteSql(
    openDatabase(join(dir, 'master.db'), { migrations: MASTER_MIGRATIONS, logger: silentLogger() }),
    'database m',
  );
  const t = '2030-01-01T00:00:00.000Z';
  await s.transaction(async () => {
    for (const i of [1, 2, 3]) {
      await s.run('INSERT INTO generations (generation, created_at, created_by, note) VALUES (?, ?, ?, ?)', [
        i,
        t,
        'cli',
        `g${i} ?`,
      ]);
    }
    await s.run('INSERT INTO packages (id, name, created_at) VALUES (5, ?, ?)', ['app', t]);
    await s.run('INSERT INTO packages (id, name, created_at) VALUES (9, ?, ?)', ['tool', t]);
    const seq = (await s.get<{ seq: number }>(
      'INSERT INTO manifests (id, sha256, length, bytes, chunk_count, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq',
      ['m1', 'aa', 3, Buffer.from([1, 2, 3]), 2, t],
    ))!.seq;
    await s.run('INSERT INTO chunk_refs (manifest_seq, chunk_id) VALUES (?, ?), (?, ?)', [
      seq,
      Buffer.alloc(32, 1),
      seq,
      Buffer.alloc(32, 2),
    ]);
    await s.run(
      `INSERT INTO package_versions (package_id, version, manifest_id, manifest_sha256, manifest_length, target_path, bin,
         total_bytes, chunk_count, added_generation, removed_generation, created_at, created_by)
       VALUES (5, '1.0', 'm1', 'aa', 3, 'app/1.0', '0', ?, 2, 1, 2, ?, 'cli'), (5, '1.0', 'm1', 'aa', 3, 'app/1.0', '0', 7, 2, 3, NULL, ?, 'cli')`,
      [2 ** 40, t, t],
    );
    for (let i = 0; i < 50; i++) {
      await s.run(
        'INSERT INTO metadata_files (name, role, version, bytes, sha256, length, generation, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        [`${i}.bin-${i}.json`, `bin-${i}`, i, Buffer.from(`{"signed":${i}}`), 'x', 10, (i % 3) + 1, t],
      );
    }
    await s.run(
      "INSERT INTO machines (name, role, state, requested_at, state_changed_at) VALUES ('d1', 'depot', 'approved', ?, ?)",
      [t, t],
    );
    await s.run(
      `INSERT INTO depot_status (machine, received_at, reported_at, sequence, served_generation, target_generation,
         bytes_fetched, chunks_fetched, report) VALUES ('d1', ?, ?, 1, 3, 3, 10, 1, '{}')`,
      [t, t],
    );
    await s.run(
      "INSERT INTO audit_log (id, at, actor, action, detail) VALUES (40, ?, 'cli', 'x', '{\"a\":1}')",
      [t],
    );
    await s.run(
      'INSERT INTO signer_lease (id, holder, epoch, acquired_at, expires_at) VALUES (1, NULL, 4, ?, ?)',
      [t, t],
    );
  });
  await s.close();
  return dir;
}

async function dump(s: Sql): Promise<unknown> {
  return {
    generations: await s.all('SELECT * FROM generations ORDER BY generation'),
    packages: await s.all('SELECT * FROM packages ORDER BY id'),
    versions: await s.all('SELECT * FROM package_versions ORDER BY id'),
    refs: await s.all('SELECT * FROM chunk_refs ORDER BY manifest_seq, chunk_id'),
    audit: await s.all('SELECT * FROM audit_log ORDER BY id'),
    status: await s.all('SELECT * FROM depot_status ORDER BY id'),
    lease: await s.all('SELECT * FROM signer_lease'),
    metadata: await metadataHash(s),
  };
}

const config = (dir: string) =>
  JSON.parse(readFileSync(join(dir, 'master.json'), 'utf8')) as Record<string, unknown>;

describe('master migrate between SQLite and PostgreSQL', () => {
  it('moves a catalog to PostgreSQL, verified, and back to SQLite', async () => {
    const dir = await sqliteMaster();
    const lite = new SqliteSql(
      openDatabase(join(dir, 'master.db'), { migrations: MASTER_MIGRATIONS, logger: silentLogger() }),
      'database m',
    );
    const before = await dump(lite);
    await lite.close();
    const url = await cluster.createDatabase('migrate');
    const r = await migrateBackend(dir, url, { logger: silentLogger() });
    expect(r.tables.find((t) => t.name === 'metadata_files')!.rows).toBe(50);
    expect(r.tables.find((t) => t.name === 'chunk_refs')!.rows).toBe(2);
    expect(r.tables.map((t) => t.name).indexOf('packages')).toBeLessThan(
      r.tables.map((t) => t.name).indexOf('package_versions'),
    );
    expect(config(dir)).toEqual({ name: 'm', bins: 16, database: { url } });
    expect(existsSync(join(dir, 'master.db'))).toBe(false);
    expect(r.keptSqlite).toBe(join(dir, 'master.db.before-postgres'));

    const pg = await openPostgresSql(url, { logger: silentLogger(), migrations: POSTGRES_MASTER_MIGRATIONS });
    expect(await dump(pg)).toEqual(before);
    // Identity sequences moved past the copied ids.
    expect(await pg.get("INSERT INTO packages (name, created_at) VALUES ('new', 't') RETURNING id")).toEqual({
      id: 10,
    });
    expect(
      await pg.get("INSERT INTO audit_log (at, actor, action) VALUES ('t', 'a', 'b') RETURNING id"),
    ).toEqual({
      id: 41,
    });
    await pg.run("DELETE FROM packages WHERE name = 'new'");
    await pg.run('DELETE FROM audit_log WHERE id = 41');
    await pg.close();

    // Refused back into SQLite while the kept copy is in the way? No: it was renamed; master.db is free.
    const back = await migrateBackend(dir, 'sqlite', { logger: silentLogger() });
    expect(back.metadataSha256).toBe(r.metadataSha256);
    expect(config(dir)).toEqual({ name: 'm', bins: 16 });
    const again = new SqliteSql(
      openDatabase(join(dir, 'master.db'), { migrations: MASTER_MIGRATIONS, logger: silentLogger() }),
      'database m',
    );
    expect(await dump(again)).toEqual(before);
    await again.close();
  });

  it('refuses a non-empty PostgreSQL database and changes nothing', async () => {
    const dir = await sqliteMaster();
    const url = await cluster.createDatabase('busy');
    await cluster.query('CREATE TABLE other (x INTEGER); INSERT INTO other VALUES (1)', url.split('/').pop());
    const e = await migrateBackend(dir, url, { logger: silentLogger() }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'conflict', hint: expect.stringMatching(/empty database/) });
    expect((e as Error).message).toMatch(/is not empty/);
    expect((e as Error).message).not.toContain(cluster.password);
    expect(config(dir)).toEqual({ name: 'm', bins: 16 });
    expect(existsSync(join(dir, 'master.db'))).toBe(true);

    // A database that already holds another master's catalog is refused as well.
    const other = await cluster.createDatabase('other');
    const first = await sqliteMaster();
    await migrateBackend(first, other, { logger: silentLogger() });
    await expect(migrateBackend(dir, other, { logger: silentLogger() })).rejects.toMatchObject({
      code: 'conflict',
    });
    expect(config(dir)).toEqual({ name: 'm', bins: 16 });
  });

  it('refuses bad targets with clear errors', async () => {
    const dir = await sqliteMaster();
    await expect(migrateBackend(dir, 'sqlite', { logger: silentLogger() })).rejects.toMatchObject({
      code: 'bad-input',
      message: expect.stringMatching(/already in SQLite/),
    });
    await expect(migrateBackend(dir, 'mysql://x/y', { logger: silentLogger() })).rejects.toMatchObject({
      code: 'bad-input',
    });
    await expect(
      migrateBackend(join(root, 'nope'), 'sqlite', { logger: silentLogger() }),
    ).rejects.toMatchObject({
      code: 'not-found',
    });
    const e = await migrateBackend(dir, cluster.url('db', { password: 'wrong' }), {
      logger: silentLogger(),
    }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'unauthorized' });
    expect(config(dir)).toEqual({ name: 'm', bins: 16 });
    // master.json's database section is checked like every other setting.
    for (const database of [{ url: 'mysql://h/db' }, { url: 5 }, { host: 'h' }]) {
      writeFileSync(join(dir, 'master.json'), JSON.stringify({ name: 'm', database }));
      await expect(
        migrateBackend(dir, 'sqlite', { logger: silentLogger() }),
        JSON.stringify(database),
      ).rejects.toMatchObject({
        code: 'bad-input',
        message: expect.stringMatching(/master\.json: database/),
      });
    }
  });
});
