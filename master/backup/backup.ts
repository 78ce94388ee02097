import { createReadStream, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { mkdtemp, open, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { fromSqliteError } from '../../src/db/errors.js';
import { fsyncDir } from '../../src/fs/atomic-write.js';
import type { Logger } from '../../src/log.js';
import { STORE_FORMAT_DIR } from '../../src/store/chunk-store.js';
import { packFileName } from '../../src/store/pack-format.js';
import { recordAudit } from '../db/audit.js';
import { sqliteHandle, type MasterDb } from '../db/database.js';
import type { MasterLayout } from '../layout.js';
import { endEntry, entryHeader } from './archive.js';
import { BackupWriter } from './container.js';

/**
 * `master backup`: everything a master needs, as one encrypted file (container.ts), made while the master
 * goes on serving and publishing:
 *   - the database through SQLite's online backup API (one consistent moment);
 *   - the chunk store: its index through the same API, then each pack file up to the size that index
 *     copy says is committed (packs are append-only, so that prefix cannot change under us);
 *   - every other file of the master directory: master.json, keys/ (role keys, totp.key), ca/, tls/,
 *     the root files and the revocation list. Not: backups/, the drop folders (files waiting to be
 *     published), master.lock and temporary files.
 * Written to `.NAME.tmp` (mode 0600), fsynced, renamed to `master-STAMP.dsbackup`; the newest
 * `retainCount` are kept. The outcome is audit-logged (`database.backup` / `database.backup-failed`):
 * the latest one drives the "backup failed" alert (alert.ts).
 */
export const BACKUP_FILE = /^master-\d{8}T\d{9}Z\.dsbackup$/;
export const AUDIT_TARGET = 'master.db';

export interface BackupOptions {
  db: MasterDb;
  layout: MasterLayout;
  /** Where the backup goes (M/backups by default). */
  dir: string;
  retainCount: number;
  passphrase: string;
  /** The master's name and root fingerprint, written in the clear into the header. */
  masterName: string;
  fingerprint: string;
  /** Who asked: 'cli', 'schedule'. */
  actor: string;
  log: Logger;
  now?: () => Date;
  /** Lower scrypt cost (tests only). */
  scrypt?: { N: number; r: number; p: number };
  /** Record this error as the backup's failure without doing anything (no passphrase, say). */
  failWith?: unknown;
}

export interface BackupResult {
  file: string;
  bytes: number;
  files: number;
  durationMs: number;
  /** Older backups deleted by the retention count. */
  removed: string[];
}

export function backupFileName(at: Date): string {
  return `master-${at.toISOString().replace(/[-:.]/g, '')}.dsbackup`;
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

export async function backupMaster(o: BackupOptions): Promise<BackupResult> {
  const log = o.log.child({ component: 'master.backup' });
  const now = o.now ?? (() => new Date());
  const t0 = performance.now();
  const createdAt = now();
  const name = backupFileName(createdAt);
  const file = join(o.dir, name);
  const tmp = join(o.dir, `.${name}.tmp`);
  let staging: string | undefined;
  let out: FileHandle | undefined;
  try {
    if (o.failWith !== undefined) throw o.failWith;
    try {
      mkdirSync(o.dir, { recursive: true, mode: 0o700 });
      staging = await mkdtemp(join(o.dir, '.staging-'));
    } catch (e) {
      throw fromSystemError(e, `backup folder ${o.dir}`);
    }
    // 1. Consistent copies of the two databases (the copies never leave the private staging folder).
    const dbCopy = join(staging, 'master.db');
    // SQLite's online backup; a catalog on a database server is backed up by that server's own tools.
    const sqlite = sqliteHandle(o.db);
    if (!sqlite) {
      throw new DepotsyncError(
        'usage',
        `master backup copies a SQLite catalog; ${o.db.sql.what} is not one`,
        {
          hint: "back the catalog up with the database server's own tools (for PostgreSQL: pg_dump or its replication)",
        },
      );
    }
    try {
      await sqlite.backup(dbCopy);
    } catch (e) {
      throw fromSystemError(e, `backup of the master database into ${dbCopy}`);
    }
    const generation = checkCopy(dbCopy, 'master.db');
    const indexPath = join(o.layout.storeDir, STORE_FORMAT_DIR, 'index.sqlite');
    const indexCopy = join(staging, 'index.sqlite');
    const index = new BetterSqlite3(indexPath, { readonly: true, fileMustExist: true });
    try {
      await index.backup(indexCopy);
    } catch (e) {
      throw fromSystemError(e, `backup of the chunk store index into ${indexCopy}`);
    } finally {
      index.close();
    }
    checkCopy(indexCopy, 'chunk store index');
    const packs = packSizes(indexCopy);

    // 2. The encrypted file.
    try {
      out = await open(tmp, 'wx', 0o600);
    } catch (e) {
      throw fromSystemError(e, `backup file ${tmp}`);
    }
    const w = await BackupWriter.create(
      out,
      o.passphrase,
      {
        fingerprint: o.fingerprint,
        masterName: o.masterName,
        createdAt: createdAt.toISOString(),
        generation,
      },
      o.scrypt ? { scrypt: o.scrypt } : {},
    );
    let files = 0;
    let bytes = 0;
    const add = async (path: string, source: string, mode: number, size?: number) => {
      const st = statSync(source);
      const n = size ?? st.size;
      if (st.size < n)
        throw new DepotsyncError('conflict', `${source} is shorter than its committed size`, {
          hint: 'a compaction ran during the backup; run the backup again',
        });
      await w.write(entryHeader({ path, size: n, mode }));
      if (n > 0) {
        let got = 0;
        for await (const chunk of createReadStream(source, {
          start: 0,
          end: n - 1,
          highWaterMark: 1 << 20,
        })) {
          got += (chunk as Buffer).length;
          await w.write(chunk as Buffer);
        }
        if (got !== n) throw new DepotsyncError('conflict', `${source} changed while it was backed up`);
      }
      files++;
      bytes += n;
    };
    await add('master.db', dbCopy, 0o600);
    const storeRel = relative(o.layout.dir, join(o.layout.storeDir, STORE_FORMAT_DIR)).split(sep).join('/');
    await add(`${storeRel}/index.sqlite`, indexCopy, 0o644);
    for (const p of packs) {
      const f = packFileName(p.id);
      await add(
        `${storeRel}/packs/${f}`,
        join(o.layout.storeDir, STORE_FORMAT_DIR, 'packs', f),
        0o644,
        p.size,
      );
    }
    for (const f of otherFiles(o.layout, o.dir)) await add(f.rel, f.full, f.mode);
    await w.write(endEntry(files, bytes));
    await w.finish();
    await out.sync();
    await out.close();
    out = undefined;
    await rename(tmp, file);
    await fsyncDir(o.dir);
    const removed = prune(o.dir, o.retainCount, log);
    const result: BackupResult = {
      file,
      bytes: statSync(file).size,
      files,
      durationMs: Math.round(performance.now() - t0),
      removed,
    };
    await recordAudit(o.db, {
      actor: o.actor,
      action: 'database.backup',
      target: AUDIT_TARGET,
      detail: { file: name, bytes: result.bytes, files, removed: removed.length },
    });
    log.info({ file, bytes: result.bytes, durationMs: result.durationMs, removed }, 'master backed up');
    return result;
  } catch (e) {
    await out?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    const err = e instanceof DepotsyncError ? e : fromSystemError(e, `backup of the master into ${o.dir}`);
    log.error({ err: err.message }, 'master backup failed');
    try {
      await recordAudit(o.db, {
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
        err.hint ?? `check that ${o.dir} exists, is writable and has space; the master itself is unchanged`,
      cause: e,
    });
  } finally {
    if (staging) await rm(staging, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Files of the master directory besides the database and the store (see the list above). */
function otherFiles(layout: MasterLayout, backupDir: string): { rel: string; full: string; mode: number }[] {
  const skipDirs = new Set([
    layout.backups,
    backupDir,
    layout.dropbox,
    layout.dropboxRejected,
    layout.storeDir,
  ]);
  const skipFiles = new Set(
    ['', '-wal', '-shm', '-journal']
      .map((s) => `${layout.database}${s}`)
      .concat(join(layout.dir, 'master.lock')),
  );
  const out: { rel: string; full: string; mode: number }[] = [];
  const walk = (dir: string) => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, d.name);
      if (d.name.startsWith('.')) continue; // temporary files of atomic writes
      if (d.isDirectory()) {
        if (!skipDirs.has(full)) walk(full);
      } else if (d.isFile() && !skipFiles.has(full)) {
        out.push({
          rel: relative(layout.dir, full).split(sep).join('/'),
          full,
          mode: statSync(full).mode & 0o777,
        });
      }
    }
  };
  walk(layout.dir);
  return out.sort((a, b) => a.rel.localeCompare(b.rel));
}

/** Pack ids and committed sizes, read from the index copy. */
function packSizes(indexCopy: string): { id: number; size: number }[] {
  const db = new BetterSqlite3(indexCopy, { readonly: true });
  try {
    return db.prepare('SELECT id, size FROM packs ORDER BY id').all() as { id: number; size: number }[];
  } finally {
    db.close();
  }
}

/**
 * The copy opens, passes a quick check and becomes one self-contained file (no -wal beside it). Returns
 * the catalog generation for master.db (0 for other databases).
 */
function checkCopy(path: string, what: string): number {
  let copy: BetterSqlite3.Database | undefined;
  try {
    copy = new BetterSqlite3(path);
    const check = copy.pragma('quick_check', { simple: true });
    if (check !== 'ok')
      throw new DepotsyncError(
        'corrupt',
        `backup copy of the ${what} fails its check: ${String(check).slice(0, 200)}`,
        {
          hint: 'run `PRAGMA integrity_check` on the live database',
        },
      );
    copy.pragma('journal_mode = DELETE');
    if (what !== 'master.db') return 0;
    const g = copy.prepare('SELECT max(generation) FROM generations').pluck().get() as number | null;
    return g ?? 0;
  } catch (e) {
    if (e instanceof DepotsyncError) throw e;
    // A full disk while making the copy self-contained is a full disk, not a damaged copy.
    const typed = fromSqliteError(e, `backup copy ${path}`, path);
    if (typed.code === 'disk-full') throw typed;
    throw new DepotsyncError(
      'corrupt',
      `backup copy of the ${what} cannot be read back: ${(e as Error).message}`,
      {
        cause: e,
      },
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

/**
 * The backup passphrase: from `file` (`--passphrase-file`, or the `backupPassphraseFile` setting), else
 * from DEPOTSYNC_BACKUP_PASSPHRASE. Never from the command line, where other users see it in `ps`.
 */
export function readPassphrase(
  file: string | undefined | null,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw fromSystemError(e, `backup passphrase file ${file}`);
    }
    // One trailing newline is the editor's, not the passphrase's.
    return text.replace(/\r?\n$/, '');
  }
  const v = env.DEPOTSYNC_BACKUP_PASSPHRASE;
  if (v) return v;
  throw new DepotsyncError(
    'usage',
    'no backup passphrase: give --passphrase-file FILE or set DEPOTSYNC_BACKUP_PASSPHRASE',
    {
      hint: 'backups are always encrypted; the passphrase is never taken from the command line',
    },
  );
}
