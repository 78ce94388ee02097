import { mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { fromSqliteError } from '../../src/db/errors.js';
import { fsyncDir } from '../../src/fs/atomic-write.js';
import type { Logger } from '../../src/log.js';
import { recordAudit } from '../db/audit.js';
import type { MasterDb } from '../db/database.js';

/**
 * Online backup of the master's database with SQLite's backup API (better-sqlite3
 * `db.backup()`): a consistent copy of one moment while the master goes on serving and publishing.
 *   1. copy into `M/backups/.master-STAMP.db.tmp`;
 *   2. check the copy (`PRAGMA quick_check`) and make it self-contained (rollback journal, no -wal file);
 *   3. fsync, rename to `master-STAMP.db` (UTC time, so names sort by age), fsync the folder;
 *   4. keep the newest `retainCount` backups, delete the older ones;
 *   5. audit-log the outcome (`database.backup` / `database.backup-failed`): the latest one drives the
 *      "backup failed" alert, which clears on the next success (alert.ts).
 */
export const BACKUP_FILE = /^master-\d{8}T\d{9}Z\.db$/;
export const AUDIT_TARGET = 'master.db';

export interface BackupOptions {
  db: MasterDb;
  /** M/backups. */
  dir: string;
  retainCount: number;
  /** Who asked: 'cli', 'schedule'. */
  actor: string;
  log: Logger;
  now?: () => Date;
}

export interface BackupResult {
  file: string;
  bytes: number;
  durationMs: number;
  /** Older backups deleted by the retention count. */
  removed: string[];
}

export function backupFileName(at: Date): string {
  return `master-${at.toISOString().replace(/[-:.]/g, '')}.db`;
}

/** Backups in `dir`, oldest first. */
export function listBackups(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => BACKUP_FILE.test(f))
      .sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromSystemError(e, `backup folder ${dir}`);
  }
}

export async function backupDatabase(o: BackupOptions): Promise<BackupResult> {
  const log = o.log.child({ component: 'master.backup' });
  const now = o.now ?? (() => new Date());
  const t0 = performance.now();
  const name = backupFileName(now());
  const file = join(o.dir, name);
  const tmp = join(o.dir, `.${name}.tmp`);
  try {
    try {
      mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw fromSystemError(e, `backup folder ${o.dir}`);
    }
    try {
      await o.db.db.backup(tmp);
    } catch (e) {
      throw fromSystemError(e, `backup of the master database into ${tmp}`);
    }
    checkCopy(tmp);
    const fh = await open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    await fsyncDir(o.dir);
    const removed = prune(o.dir, o.retainCount, log);
    const result: BackupResult = {
      file,
      bytes: statSync(file).size,
      durationMs: Math.round(performance.now() - t0),
      removed,
    };
    recordAudit(o.db, {
      actor: o.actor,
      action: 'database.backup',
      target: AUDIT_TARGET,
      detail: { file: name, bytes: result.bytes, removed: removed.length },
    });
    log.info({ file, bytes: result.bytes, durationMs: result.durationMs, removed }, 'database backed up');
    return result;
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    const err =
      e instanceof DepotsyncError ? e : fromSystemError(e, `backup of the master database into ${o.dir}`);
    log.error({ err: err.message }, 'database backup failed');
    try {
      recordAudit(o.db, {
        actor: o.actor,
        action: 'database.backup-failed',
        target: AUDIT_TARGET,
        detail: { error: err.message.slice(0, 1000) },
      });
    } catch (auditErr) {
      log.error({ err: (auditErr as Error).message }, 'could not record the failed backup');
    }
    throw new DepotsyncError(err.code, err.message, {
      hint:
        err.hint ?? `check that ${o.dir} exists, is writable and has space; the database itself is unchanged`,
      cause: e,
    });
  }
}

/** The copy opens, passes a quick check, and becomes one self-contained file (no -wal beside it). */
function checkCopy(path: string): void {
  let copy: BetterSqlite3.Database | undefined;
  try {
    copy = new BetterSqlite3(path);
    const check = copy.pragma('quick_check', { simple: true });
    if (check !== 'ok')
      throw new DepotsyncError(
        'corrupt',
        `backup copy ${basename(path)} fails its check: ${String(check).slice(0, 200)}`,
        { hint: 'run `PRAGMA integrity_check` on M/master.db' },
      );
    copy.pragma('journal_mode = DELETE');
  } catch (e) {
    if (e instanceof DepotsyncError) throw e;
    // A full disk while making the copy self-contained is a full disk, not a damaged copy.
    const typed = fromSqliteError(e, `backup copy ${path}`, path);
    if (typed.code === 'disk-full') throw typed;
    throw new DepotsyncError(
      'corrupt',
      `backup copy ${basename(path)} cannot be read back: ${(e as Error).message}`,
      { cause: e },
    );
  } finally {
    copy?.close();
  }
}

function prune(dir: string, retainCount: number, log: Logger): string[] {
  const all = listBackups(dir);
  const old = all.slice(0, Math.max(0, all.length - retainCount));
  for (const f of old) {
    try {
      unlinkSync(join(dir, f));
    } catch (e) {
      log.warn({ file: f, err: (e as Error).message }, 'could not delete an old backup');
    }
  }
  return old;
}
