import { resolve } from 'node:path';
import type { MasterContext } from '../context.js';
import { masterFingerprint } from '../trust/rotate.js';
import { backupMaster, readPassphrase, type BackupResult } from './backup.js';
import { checkPassphrase } from './container.js';

/** The backup folder of a master: `backupDir` from master.json (relative to M), else M/backups. */
export function backupDirOf(ctx: Pick<MasterContext, 'config' | 'layout'>): string {
  return ctx.config.backupDir ? resolve(ctx.layout.dir, ctx.config.backupDir) : ctx.layout.backups;
}

/**
 * One backup of an open master, as `master backup` and the schedule make it. The passphrase comes from
 * `passphraseFile`, else the `backupPassphraseFile` setting, else DEPOTSYNC_BACKUP_PASSPHRASE; a
 * missing or short one fails like any other backup failure (audit-logged, so the alert shows it).
 */
export async function backupOpenMaster(
  ctx: MasterContext,
  o: {
    actor: string;
    passphraseFile?: string | undefined;
    dir?: string | undefined;
    now?: () => Date;
    scrypt?: { N: number; r: number; p: number };
  },
): Promise<BackupResult> {
  const dir = o.dir ? resolve(o.dir) : backupDirOf(ctx);
  const common = {
    db: ctx.db,
    layout: ctx.layout,
    dir,
    retainCount: ctx.config.backupRetainCount,
    masterName: ctx.config.name,
    actor: o.actor,
    log: ctx.log,
    ...(o.now ? { now: o.now } : {}),
    ...(o.scrypt ? { scrypt: o.scrypt } : {}),
  };
  let passphrase: string;
  let fingerprint: string;
  try {
    const file = o.passphraseFile ?? ctx.config.backupPassphraseFile ?? undefined;
    passphrase = checkPassphrase(
      readPassphrase(file ? resolve(ctx.layout.dir, file) : undefined),
      file ? `file ${file}` : 'DEPOTSYNC_BACKUP_PASSPHRASE',
    );
    fingerprint = await masterFingerprint(ctx);
  } catch (e) {
    // Recorded as a failed backup (the alert), with the reason.
    return backupMaster({ ...common, passphrase: '', fingerprint: '', failWith: e });
  }
  return backupMaster({ ...common, passphrase, fingerprint });
}
