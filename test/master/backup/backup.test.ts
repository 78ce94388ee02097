import { createHash } from 'node:crypto';
import {
  existsSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
  copyFileSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { openMaster } from '../../../master/context.js';
import { initMaster } from '../../../master/init.js';
import { listAudit } from '../../../master/db/audit.js';
import { byName } from '../../../master/db/machines.js';
import { backupDatabase, listBackups } from '../../../master/backup/backup.js';
import { acquireMasterLock } from '../../../master/backup/lock.js';
import { restoreDatabase } from '../../../master/backup/restore.js';
import { adminFixture, insertDepot, type AdminFixture } from '../admin/helpers.js';
import { tempDir } from '../../helpers/tmp.js';

const HOUR = 3_600_000;
const log = silentLogger();
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('master database backup: online copy, retention, alert on failure', () => {
  let f: AdminFixture;
  beforeAll(async () => {
    f = await adminFixture({ start: Date.parse('2026-05-01T00:00:00Z') });
  });
  afterAll(async () => {
    await f?.close();
  });
  const backup = (actor = 'schedule') =>
    backupDatabase({
      db: f.ctx.db,
      dir: f.ctx.layout.backups,
      retainCount: 3,
      actor,
      log,
      now: () => new Date(f.clock.t),
    });

  it('writes a checked, self-contained, timestamped copy and keeps only the newest N', async () => {
    insertDepot(f.ctx, 'depot-a');
    const first = await backup('cli');
    expect(first.file).toBe(join(f.ctx.layout.backups, 'master-20260501T000000000Z.db'));
    expect(existsSync(`${first.file}-wal`)).toBe(false);
    const copy = new BetterSqlite3(first.file, { readonly: true });
    try {
      expect(copy.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(copy.prepare('SELECT name FROM machines').pluck().all()).toEqual(['depot-a']);
    } finally {
      copy.close();
    }
    for (let i = 0; i < 4; i++) {
      f.clock.advance(HOUR);
      await backup();
    }
    expect(listBackups(f.ctx.layout.backups)).toEqual([
      'master-20260501T020000000Z.db',
      'master-20260501T030000000Z.db',
      'master-20260501T040000000Z.db',
    ]);
    expect(readdirSync(f.ctx.layout.backups).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    const audit = listAudit(f.ctx.db, { limit: 10 }).entries.filter((e) => e.action === 'database.backup');
    expect(audit).toHaveLength(5);
    expect(audit[0]).toMatchObject({
      actor: 'schedule',
      target: 'master.db',
      detail: { file: 'master-20260501T040000000Z.db', removed: 1 },
    });
  });

  it('a failed backup raises an error alert, which clears on the next successful one', async () => {
    const keys = () =>
      f.admin
        .status({ packages: false })
        .alerts.filter((a) => a.kind === 'backup')
        .map((a) => `${a.level} ${a.key}`);
    expect(keys()).toEqual([]);
    // The backup folder cannot be made: a file stands in its place.
    rmSync(f.ctx.layout.backups, { recursive: true });
    writeFileSync(f.ctx.layout.backups, 'not a folder');
    f.clock.advance(HOUR);
    await expect(backup()).rejects.toThrow(/backup folder .*backups/);
    expect(keys()).toEqual(['error backup:master.db']);
    expect(f.admin.status({ packages: false }).alerts.find((a) => a.kind === 'backup')?.message).toMatch(
      /database backup failed at 2026-05-01T05:00:00.000Z: backup folder/,
    );
    rmSync(f.ctx.layout.backups);
    f.clock.advance(HOUR);
    await backup();
    expect(keys()).toEqual([]);
  });
});

describe('master database restore', () => {
  const tmp = tempDir('depotsync-restore-');
  const M = join(tmp.dir, 'M');
  let good: string;
  beforeAll(async () => {
    await initMaster(M, { log });
    const ctx = await openMaster(M, log);
    try {
      insertDepot(ctx, 'depot-old');
      good = (
        await backupDatabase({ db: ctx.db, dir: ctx.layout.backups, retainCount: 5, actor: 'cli', log })
      ).file;
      insertDepot(ctx, 'depot-new'); // after the backup
    } finally {
      await ctx.close(); // a restore runs with the master stopped
    }
  });
  afterAll(() => tmp.cleanup());

  /** The current database's bytes and what it holds, to show a refused restore changed nothing. */
  const fingerprint = () => {
    const db = new BetterSqlite3(join(M, 'master.db'), { readonly: true });
    try {
      return {
        machines: db.prepare('SELECT name FROM machines ORDER BY name').pluck().all(),
        sha: sha(join(M, 'master.db')),
      };
    } finally {
      db.close();
    }
  };
  const leftovers = () => readdirSync(M).filter((n) => n.includes('restore') || n === 'master.lock');

  it("refuses a non-SQLite file, a truncated backup and another application's database, changing nothing", async () => {
    const before = fingerprint();
    const text = join(tmp.dir, 'notes.txt');
    writeFileSync(text, 'these are not the bytes you are looking for\n'.repeat(100));
    await expect(restoreDatabase(M, text, { log })).rejects.toThrow(/notes\.txt is not a SQLite database/);

    const truncated = join(tmp.dir, 'truncated.db');
    copyFileSync(good, truncated);
    truncateSync(truncated, Math.floor(statSync(good).size / 2));
    await expect(restoreDatabase(M, truncated, { log })).rejects.toThrow(
      /truncated\.db (fails PRAGMA integrity_check|cannot be read as a database)/,
    );

    const other = join(tmp.dir, 'other.db');
    const o = new BetterSqlite3(other);
    o.exec("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('soup'); PRAGMA user_version = 2;");
    o.close();
    await expect(restoreDatabase(M, other, { log })).rejects.toThrow(
      /other\.db is not a depotsync master database \(schema version 2; no table machines/,
    );

    const newer = join(tmp.dir, 'newer.db');
    copyFileSync(good, newer);
    const n = new BetterSqlite3(newer);
    n.pragma('user_version = 999');
    n.close();
    await expect(restoreDatabase(M, newer, { log })).rejects.toThrow(
      /schema version 999, newer than this depotsync knows/,
    );
    await expect(restoreDatabase(M, join(tmp.dir, 'missing.db'), { log })).rejects.toThrow(
      /missing\.db: no such file/,
    );

    expect(fingerprint()).toEqual(before);
    expect(leftovers()).toEqual([]);
  });

  it('is refused while the master serves (its lock), and restores a backup with the current database kept aside', async () => {
    const serving = acquireMasterLock(M, 'serve');
    try {
      await expect(restoreDatabase(M, good, { log })).rejects.toThrow(
        new RegExp(`master directory .* is in use: serve by process ${process.pid}`),
      );
    } finally {
      serving.release();
    }
    expect(fingerprint().machines).toEqual(['depot-new', 'depot-old']);
    const r = await restoreDatabase(M, good, { log });
    expect(r).toMatchObject({ restored: good, schemaVersion: expect.any(Number) });
    expect(readdirSync(r.keptAside!)).toContain('master.db');
    const ctx = await openMaster(M, log);
    try {
      expect(byName(ctx.db, 'depot-new')).toBeUndefined();
      expect(byName(ctx.db, 'depot-old')).toBeDefined();
      expect(listAudit(ctx.db, { limit: 1 }).entries[0]).toMatchObject({
        action: 'database.restore',
        detail: { from: good },
      });
    } finally {
      await ctx.close();
    }
    const aside = new BetterSqlite3(join(r.keptAside!, 'master.db'), { readonly: true });
    try {
      expect(aside.prepare('SELECT name FROM machines ORDER BY name').pluck().all()).toEqual([
        'depot-new',
        'depot-old',
      ]);
    } finally {
      aside.close();
    }
    expect(leftovers()).toEqual([]);
  });
});
