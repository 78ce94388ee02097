import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { mkdtemp, open, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { fsyncDir } from '../../src/fs/atomic-write.js';
import type { Logger } from '../../src/log.js';
import { MASTER_MIGRATIONS } from '../db/schema.js';
import { masterLayout } from '../layout.js';
import { ArchiveExtractor } from './archive.js';
import { readBackup, readBackupHeader, type BackupHeader } from './container.js';
import { applyVersionEpoch, DEFAULT_VERSION_STEP, type EpochResult } from './epoch.js';
import { acquireMasterLock, liveHolder } from './lock.js';

/**
 * `depotsync master restore --dir M FILE`: a whole master from an encrypted backup, into a folder that is
 * missing or empty (never over a master: that one may still be the better copy). Steps:
 *   1. refuse a folder in use (`M/master.lock` of a serving master) or not empty, before anything else;
 *   2. read the plaintext header: a depotsync backup of a known format, of the expected master when
 *      `expectFingerprint` is given; derive the key (a wrong passphrase stops here);
 *   3. decrypt and unpack into `M/.restore-XXXX/` frame by frame (altered or truncated files stop here),
 *      check the database (integrity, schema), then move everything into M;
 *   4. the version epoch and the restore record (epoch.ts), so the fleet follows the restored master.
 * Any failure removes what this restore created, leaving M as it found it.
 */
const MASTER_TABLES = [
  'machines',
  'certificates',
  'generations',
  'metadata_files',
  'package_versions',
  'audit_log',
];

export interface RestoreOptions {
  passphrase: string;
  log: Logger;
  /** The root fingerprint the fleet pins: the backup must be of that master. */
  expectFingerprint?: string;
  versionStep?: number;
  actor?: string;
  now?: () => Date;
}

export interface RestoreResult {
  dir: string;
  from: string;
  fingerprint: string;
  masterName: string;
  backupCreatedAt: string;
  files: number;
  bytes: number;
  epoch: EpochResult;
}

export async function restoreMaster(dir: string, file: string, o: RestoreOptions): Promise<RestoreResult> {
  const layout = masterLayout(dir);
  const source = resolve(file);
  const what = `backup ${source}`;
  // 1. The target: in use, or not empty, is refused before anything is read or written.
  const existed = existsSync(layout.dir);
  if (existed) {
    if (!statSync(layout.dir).isDirectory())
      throw new DepotsyncError('bad-input', `${layout.dir} is not a directory`, {
        hint: 'give a new or empty folder to restore into',
      });
    const holder = liveHolder(layout.dir);
    if (holder)
      throw new DepotsyncError(
        'conflict',
        `master directory ${layout.dir} is in use: ${holder.purpose} by process ${holder.pid} on ${holder.host} since ${holder.since}`,
        {
          hint: 'a restore never replaces a master that runs; stop it, and restore into a new or empty folder',
        },
      );
    if (readdirSync(layout.dir).length > 0)
      throw new DepotsyncError(
        'already-exists',
        `${layout.dir} is not empty; a restore goes into a new or empty folder`,
        {
          hint: 'restore into a new folder (then move it into place), so the current files stay as they are',
        },
      );
  }
  // 2. The header, then the key (inside readBackup).
  let fh: FileHandle;
  try {
    fh = await open(source, 'r');
  } catch (e) {
    throw fromSystemError(e, what);
  }
  let header: BackupHeader;
  try {
    header = (await readBackupHeader(fh, what)).header;
    if (o.expectFingerprint && header.fingerprint !== o.expectFingerprint.toLowerCase()) {
      throw new DepotsyncError(
        'conflict',
        `${what} is a backup of another master: ${header.masterName} with root fingerprint ${header.fingerprint}, not ${o.expectFingerprint}`,
        { hint: 'give a backup of the master whose fingerprint the fleet pins; nothing was written' },
      );
    }
  } catch (e) {
    await fh.close();
    throw e;
  }

  if (!existed) {
    try {
      mkdirSync(layout.dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      await fh.close();
      throw fromSystemError(e, `restore folder ${layout.dir}`);
    }
  }
  let lock;
  try {
    lock = acquireMasterLock(layout.dir, 'restore');
  } catch (e) {
    await fh.close();
    if (!existed) rmSync(layout.dir, { recursive: true, force: true });
    throw e;
  }
  const undo = () => {
    // Leave the folder as we found it: gone if we made it, else empty.
    if (!existed) rmSync(layout.dir, { recursive: true, force: true });
    else
      for (const f of readdirSync(layout.dir))
        if (f !== 'master.lock') rmSync(join(layout.dir, f), { recursive: true, force: true });
  };
  try {
    // 3. Unpack into a staging folder, check, move into place.
    const staging = await mkdtemp(join(layout.dir, '.restore-'));
    const x = new ArchiveExtractor(staging, what);
    let counts: { files: number; bytes: number };
    try {
      for await (const plain of readBackup(fh, o.passphrase, what)) await x.push(plain);
      counts = await x.finish();
    } catch (e) {
      await x.abort();
      throw e;
    } finally {
      await fh.close();
    }
    checkMasterDatabase(join(staging, 'master.db'), what);
    if (!existsSync(join(staging, 'master.json')) || !existsSync(join(staging, 'ca', 'ca-key.pem')))
      throw new DepotsyncError(
        'corrupt',
        `${what} lacks master.json or the CA key: it is not a whole master`,
      );
    for (const f of readdirSync(staging)) renameSync(join(staging, f), join(layout.dir, f));
    rmSync(staging, { recursive: true, force: true });
    for (const d of [layout.dropbox, layout.dropboxRejected, layout.backups])
      mkdirSync(d, { recursive: true, mode: 0o700 });
    await fsyncDir(layout.dir);

    // 4. Versions past anything the fleet saw; the restore record (certificates issued after the backup).
    const epoch = await applyVersionEpoch(layout.dir, {
      header,
      step: o.versionStep ?? DEFAULT_VERSION_STEP,
      log: o.log,
      actor: o.actor ?? 'cli',
      source,
      ...(o.now ? { now: o.now } : {}),
    });
    o.log.info({ from: source, dir: layout.dir, ...counts, generation: epoch.generation }, 'master restored');
    return {
      dir: layout.dir,
      from: source,
      fingerprint: header.fingerprint,
      masterName: header.masterName,
      backupCreatedAt: header.createdAt,
      ...counts,
      epoch,
    };
  } catch (e) {
    lock.release();
    undo();
    throw e;
  } finally {
    lock.release();
  }
}

/** Integrity, schema version and the master's tables of the unpacked database. */
function checkMasterDatabase(path: string, what: string): void {
  let db: BetterSqlite3.Database | undefined;
  try {
    db = new BetterSqlite3(path, { fileMustExist: true });
    const bad = (db.pragma('integrity_check', { simple: false }) as Array<{ integrity_check: string }>)
      .map((p) => p.integrity_check)
      .filter((p) => p !== 'ok');
    if (bad.length > 0)
      throw new DepotsyncError(
        'corrupt',
        `${what}: its database fails PRAGMA integrity_check: ${bad.slice(0, 3).join('; ').slice(0, 300)}`,
      );
    const version = db.pragma('user_version', { simple: true }) as number;
    const tables = new Set(
      (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map(
        (r) => r.name,
      ),
    );
    const missing = MASTER_TABLES.filter((t) => !tables.has(t));
    if (version < 1 || missing.length > 0)
      throw new DepotsyncError(
        'corrupt',
        `${what}: its database is not a depotsync master's (schema version ${version})`,
      );
    if (version > MASTER_MIGRATIONS.length)
      throw new DepotsyncError(
        'conflict',
        `${what}: its database has schema version ${version}, newer than this depotsync knows (${MASTER_MIGRATIONS.length})`,
        { hint: 'restore with the depotsync release that made the backup, or a newer one' },
      );
  } catch (e) {
    if (e instanceof DepotsyncError) throw e;
    throw new DepotsyncError('corrupt', `${what}: its database cannot be read: ${(e as Error).message}`, {
      cause: e,
    });
  } finally {
    db?.close();
  }
}
