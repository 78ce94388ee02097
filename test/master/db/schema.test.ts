import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { openDatabase } from '../../../src/db/open.js';
import { silentLogger } from '../../../src/log.js';
import { getOperator } from '../../../master/db/operators.js';
import { MASTER_MIGRATIONS } from '../../../master/db/schema.js';
import { testMaster, type TestMaster } from './helpers.js';

let t: TestMaster;
afterEach(() => t.cleanup());

describe('master schema', () => {
  it('creates every table once and reopens without migrating again', () => {
    t = testMaster();
    const tables = () =>
      (
        t.m.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
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
    expect(t.m.db.pragma('user_version', { simple: true })).toBe(MASTER_MIGRATIONS.length);
    t.m.db
      .prepare("INSERT INTO audit_log (at, actor, action) VALUES ('2030-01-01T00:00:00.000Z', 'x', 'y')")
      .run();
    t.reopen();
    expect(tables()).toEqual(expected);
    expect(t.m.db.pragma('synchronous', { simple: true })).toBe(2);
    expect(t.m.db.prepare('SELECT count(*) AS n FROM audit_log').get()).toEqual({ n: 1 });
  });

  it('enforces column types (STRICT tables)', () => {
    t = testMaster();
    expect(() =>
      t.m.db
        .prepare(
          "INSERT INTO operators (name, role, token_hash, created_at, created_by, disabled) VALUES ('a', 'admin', 'h', 't', 'c', 'yes')",
        )
        .run(),
    ).toThrow(/cannot store TEXT value in INTEGER column/);
  });

  it('gives operators that existed before token expiry 90 days from the upgrade', () => {
    t = testMaster();
    t.m.close();
    const path = join(t.dir, 'old.db');
    const mine = MASTER_MIGRATIONS.findIndex((m) => m.name === 'operator token expiry and last use');
    const old = openDatabase(path, { migrations: MASTER_MIGRATIONS.slice(0, mine), logger: silentLogger() });
    old
      .prepare(
        "INSERT INTO operators (name, role, token_hash, created_at, created_by) VALUES ('old', 'admin', 'h', '2020-01-01T00:00:00.000Z', 'cli')",
      )
      .run();
    old.close();
    const before = Date.now();
    const m = openDatabase(path, { migrations: MASTER_MIGRATIONS, logger: silentLogger() });
    const db = { db: m, now: () => new Date(), logger: silentLogger(), close: () => m.close() };
    const op = getOperator(db, 'old')!;
    const left = Date.parse(op.tokenExpiresAt!) - before;
    expect(left).toBeGreaterThan(90 * 86_400_000 - 5_000);
    expect(left).toBeLessThan(90 * 86_400_000 + 60_000);
    expect(op.lastUsedAt).toBeNull();
    m.close();
  });
});
