import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../src/db/open.js';
import { SqliteSql } from '../../src/db/sqlite-sql.js';
import { silentLogger } from '../../src/log.js';
import { masterDbOver } from '../../master/db/database.js';
import { getOperator } from '../../master/db/operators.js';
import { MASTER_MIGRATIONS } from '../../master/db/schema.js';
import { tempDir } from '../helpers/tmp.js';

/** The SQLite schema of the master's catalog (master/db/schema.ts): SQLite only, so not in test/master/db. */
let tmp: ReturnType<typeof tempDir>;
afterEach(() => tmp.cleanup());

const open = (path: string): Database =>
  openDatabase(path, { migrations: MASTER_MIGRATIONS, logger: silentLogger() });

describe('master schema on SQLite', () => {
  it('creates every table once and reopens without migrating again', () => {
    tmp = tempDir();
    const path = join(tmp.dir, 'master.db');
    let db = open(path);
    const tables = () =>
      (
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
          name: string;
        }[]
      ).map((r) => r.name);
    const expected = [
      'alert_state',
      'audit_log',
      'bins',
      'certificates',
      'chunk_refs',
      'depot_status',
      'enrollment_tokens',
      'generation_changes',
      'generations',
      'machines',
      'manifests',
      'metadata_files',
      'notify_requests',
      'operator_sessions',
      'operators',
      'package_versions',
      'packages',
      'signer_lease',
    ];
    expect(tables()).toEqual(expected);
    expect(db.pragma('user_version', { simple: true })).toBe(MASTER_MIGRATIONS.length);
    db.prepare(
      "INSERT INTO audit_log (at, actor, action) VALUES ('2030-01-01T00:00:00.000Z', 'x', 'y')",
    ).run();
    db.close();
    db = open(path);
    expect(tables()).toEqual(expected);
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
    expect(db.prepare('SELECT count(*) AS n FROM audit_log').get()).toEqual({ n: 1 });
    db.close();
  });

  it('enforces column types (STRICT tables)', () => {
    tmp = tempDir();
    const db = open(join(tmp.dir, 'master.db'));
    try {
      expect(() =>
        db
          .prepare(
            "INSERT INTO operators (name, role, token_hash, created_at, created_by, disabled) VALUES ('a', 'admin', 'h', 't', 'c', 'yes')",
          )
          .run(),
      ).toThrow(/cannot store TEXT value in INTEGER column/);
    } finally {
      db.close();
    }
  });

  it('gives operators that existed before token expiry 90 days from the upgrade', async () => {
    tmp = tempDir();
    const path = join(tmp.dir, 'old.db');
    const mine = MASTER_MIGRATIONS.findIndex((m) => m.name === 'operator token expiry and last use');
    const old = openDatabase(path, { migrations: MASTER_MIGRATIONS.slice(0, mine), logger: silentLogger() });
    old
      .prepare(
        "INSERT INTO operators (name, role, token_hash, created_at, created_by) VALUES ('old', 'admin', 'h', '2020-01-01T00:00:00.000Z', 'cli')",
      )
      .run();
    old.close();
    const before = Date.now();
    const m = masterDbOver(new SqliteSql(open(path), `database ${path}`, path), { logger: silentLogger() });
    try {
      const op = (await getOperator(m, 'old'))!;
      const left = Date.parse(op.tokenExpiresAt!) - before;
      expect(left).toBeGreaterThan(90 * 86_400_000 - 5_000);
      expect(left).toBeLessThan(90 * 86_400_000 + 60_000);
      expect(op.lastUsedAt).toBeNull();
    } finally {
      await m.close();
    }
  });
});
