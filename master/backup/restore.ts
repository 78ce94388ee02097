import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, join, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { fsyncDir } from '../../src/fs/atomic-write.js';
import type { Logger } from '../../src/log.js';
import { recordAudit } from '../db/audit.js';
import { openMasterDatabase } from '../db/database.js';
import { MASTER_MIGRATIONS } from '../db/schema.js';
import { masterLayout } from '../layout.js';
import { AUDIT_TARGET, backupFileName } from './backup.js';
import { acquireMasterLock } from './lock.js';

/**
 * `depotsync master restore --dir M FILE`. Refused while the master serves (the
 * `M/master.lock` that `master serve` holds; restore holds it too while it works). Steps:
 *   1. check FILE without touching it: a SQLite file (header), copied to a temporary file beside the
 *      database; the copy passes `PRAGMA integrity_check`, has a depotsync master schema of a version
 *      this depotsync knows, and the master's tables;
 *   2. keep the current database aside in `M/backups/pre-restore-STAMP/` (checkpointed first, with any
 *      -wal file);
 *   3. rename the checked copy over `M/master.db` (one rename: a crash leaves the old or the new file);
 *   4. open it (older schema versions are migrated as usual) and audit-log the restore.
 * Any failure in step 1 leaves the current database untouched.
 */
const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');
/** Tables every master schema version has: a database without them is not a depotsync master's. */
const MASTER_TABLES = [
  'machines',
  'certificates',
  'generations',
  'metadata_files',
  'package_versions',
  'manifests',
  'audit_log',
];

export interface RestoreResult {
  restored: string;
  schemaVersion: number;
  /** Where the replaced database was kept (absent when there was none). */
  keptAside?: string;
}

export async function restoreDatabase(
  dir: string,
  file: string,
  opts: { log: Logger; actor?: string; now?: () => Date },
): Promise<RestoreResult> {
  const layout = masterLayout(dir);
  const source = resolve(file);
  const now = opts.now ?? (() => new Date());
  if (!existsSync(layout.config)) {
    throw new DepotsyncError(
      'not-found',
      `${layout.dir} is not a depotsync master directory (no master.json)`,
      { hint: 'give the --dir of the master whose database to restore' },
    );
  }
  const lock = acquireMasterLock(layout.dir, 'restore');
  const tmp = join(layout.dir, `.master.db.restore-${randomBytes(6).toString('hex')}.tmp`);
  try {
    // 1. Check a copy; FILE itself is only read.
    checkHeader(source);
    try {
      copyFileSync(source, tmp);
    } catch (e) {
      throw fromSystemError(e, `copy ${source}`);
    }
    const schemaVersion = checkMasterDatabase(tmp, source);

    // 2. The current database aside, whole.
    let keptAside: string | undefined;
    if (existsSync(layout.database)) {
      keptAside = join(
        layout.backups,
        `pre-restore-${backupFileName(now()).slice('master-'.length, -'.db'.length)}`,
      );
      keepAside(layout.database, keptAside, opts.log);
    }
    // 3. One rename puts the checked copy in place.
    try {
      renameSync(tmp, layout.database);
      await fsyncDir(layout.dir);
    } catch (e) {
      throw fromSystemError(e, `replace ${layout.database}`);
    }
    // 4. Open as the master does (migrations), and leave a trace in the restored audit log.
    const db = openMasterDatabase(layout.database, {
      logger: opts.log,
      ...(opts.now ? { now: opts.now } : {}),
    });
    try {
      recordAudit(db, {
        actor: opts.actor ?? 'cli',
        action: 'database.restore',
        target: AUDIT_TARGET,
        detail: { from: source, schemaVersion, ...(keptAside ? { keptAside } : {}) },
      });
    } finally {
      db.close();
    }
    opts.log.info({ from: source, keptAside, schemaVersion }, 'master database restored');
    return { restored: source, schemaVersion, ...(keptAside ? { keptAside } : {}) };
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // renamed into place, or never made
    }
    for (const side of ['-wal', '-shm', '-journal']) {
      try {
        unlinkSync(`${tmp}${side}`);
      } catch {
        // none
      }
    }
    lock.release();
  }
}

function checkHeader(path: string): void {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw fromSystemError(e, `restore source ${path}`);
  }
  if (!st.isFile()) throw new DepotsyncError('bad-input', `restore source ${path} is not a file`);
  const head = Buffer.alloc(SQLITE_HEADER.length);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  if (st.size < 512 || !head.equals(SQLITE_HEADER)) {
    throw new DepotsyncError(
      'bad-input',
      `restore source ${path} is not a SQLite database (no "SQLite format 3" header)`,
      {
        hint: 'give a backup made by `depotsync master backup` (M/backups/master-*.db); the current database was not changed',
      },
    );
  }
}

/** Integrity, schema version and the master's tables, on the temporary copy. Returns the schema version. */
function checkMasterDatabase(path: string, source: string): number {
  const what = `restore source ${source}`;
  const keep = 'the current database was not changed';
  let db: BetterSqlite3.Database | undefined;
  try {
    db = new BetterSqlite3(path, { fileMustExist: true });
    const problems = db.pragma('integrity_check', { simple: false }) as Array<{ integrity_check: string }>;
    const bad = problems.map((p) => p.integrity_check).filter((p) => p !== 'ok');
    if (bad.length > 0) {
      throw new DepotsyncError(
        'corrupt',
        `${what} fails PRAGMA integrity_check: ${bad.slice(0, 3).join('; ').slice(0, 300)}`,
        { hint: `use another backup; ${keep}` },
      );
    }
    const version = db.pragma('user_version', { simple: true }) as number;
    const tables = new Set(
      (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map(
        (r) => r.name,
      ),
    );
    const missing = MASTER_TABLES.filter((t) => !tables.has(t));
    if (version < 1 || missing.length > 0) {
      throw new DepotsyncError(
        'bad-input',
        `${what} is not a depotsync master database (schema version ${version}${missing.length ? `; no table ${missing.join(', ')}` : ''})`,
        {
          hint: `give a backup made by \`depotsync master backup\`; ${keep}`,
        },
      );
    }
    if (version > MASTER_MIGRATIONS.length) {
      throw new DepotsyncError(
        'conflict',
        `${what} has schema version ${version}, newer than this depotsync knows (${MASTER_MIGRATIONS.length})`,
        { hint: `upgrade depotsync first; ${keep}` },
      );
    }
    // One self-contained file (no -wal beside it) before it is renamed into place.
    db.pragma('journal_mode = DELETE');
    return version;
  } catch (e) {
    if (e instanceof DepotsyncError) throw e;
    // SQLITE_NOTADB, SQLITE_CORRUPT: a damaged or truncated file.
    throw new DepotsyncError('corrupt', `${what} cannot be read as a database: ${(e as Error).message}`, {
      hint: `use another backup; ${keep}`,
      cause: e,
    });
  } finally {
    db?.close();
  }
}

/** Checkpoint the current database (when it opens), then copy it and any -wal file into `aside`. */
function keepAside(database: string, aside: string, log: Logger): void {
  try {
    const cur = new BetterSqlite3(database, { fileMustExist: true });
    try {
      cur.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      cur.close();
    }
  } catch (e) {
    log.warn(
      { err: (e as Error).message },
      'could not checkpoint the current database; keeping its files as they are',
    );
  }
  try {
    mkdirSync(aside, { recursive: true, mode: 0o700 });
    for (const side of ['', '-wal']) {
      if (existsSync(`${database}${side}`))
        copyFileSync(`${database}${side}`, join(aside, `${basename(database)}${side}`));
    }
    // The -wal and -shm belong to the old file: the restored one must not replay them.
    for (const side of ['-wal', '-shm'])
      if (existsSync(`${database}${side}`)) unlinkSync(`${database}${side}`);
  } catch (e) {
    throw fromSystemError(e, `keep the current database aside in ${aside}`);
  }
}
