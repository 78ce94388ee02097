import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../src/fs/atomic-write.js';
import type { Logger } from '../../src/log.js';
import { openMaster } from '../context.js';
import { recordAudit } from '../db/audit.js';
import { commitGeneration } from '../db/commit.js';
import { currentGeneration } from '../db/catalog.js';
import { loadRepository } from '../repository.js';
import { publishRevocationList } from '../revocations.js';
import type { BackupHeader } from './container.js';

/**
 * The version epoch of a restored master (docs/operations.md, "Restore"). The lost master may have signed
 * many versions after the backup; depots and agents refuse anything older than what they trust. So the
 * restore signs targets, every bin, snapshot and timestamp again at version + `step` in one new generation
 * (current + `step`), and the revocation list at version + `step`: newer than anything the lost master
 * could have signed unless it published more than `step` times after the backup. The root is not
 * changed (its versions form a chain clients walk one by one; see the operations guide).
 *
 * It also writes `M/restored.json`, which tells the server which certificates the lost master issued
 * after the backup (server/authorize.ts adopts them: same CA, issued inside the gap).
 */
export const DEFAULT_VERSION_STEP = 1_000_000;
export const RESTORE_RECORD = 'restored.json';

export interface RestoreRecord {
  fingerprint: string;
  /** When the backup was made: certificates issued from then on are unknown to the restored database. */
  backupCreatedAt: string;
  restoredAt: string;
  fromGeneration: number;
  generation: number;
  versionStep: number;
}

export interface EpochResult {
  fromGeneration: number;
  generation: number;
  versionStep: number;
  revocationListVersion: number;
}

export async function applyVersionEpoch(
  dir: string,
  o: { header: BackupHeader; step: number; log: Logger; actor: string; source: string; now?: () => Date },
): Promise<EpochResult> {
  const ctx = await openMaster(dir, o.log, o.now ? { now: o.now } : {});
  try {
    const fromGeneration = await currentGeneration(ctx.db);
    const repo = await loadRepository(ctx, o.now);
    const files = repo.advanceVersions(o.step);
    const timestamp = files.find((f) => f.role === 'timestamp');
    const c = await commitGeneration(ctx.db, {
      generation: repo.generation,
      skip: true,
      createdBy: o.actor,
      note: `restored from a backup of ${o.header.createdAt}: versions advanced by ${o.step}`,
      ...(timestamp ? { timestampVersion: timestamp.version } : {}),
      bins: files.filter((f) => f.role.startsWith('bin-')).map((f) => ({ name: f.role, version: f.version })),
      metadata: files.map((f) => ({ role: f.role, version: f.version, bytes: f.bytes })),
    });
    const list = await publishRevocationList(ctx, o.step);
    const revocationListVersion = (JSON.parse(list.toString('utf8')) as { signed: { version: number } })
      .signed.version;
    const now = (o.now ?? (() => new Date()))();
    const record: RestoreRecord = {
      fingerprint: o.header.fingerprint,
      backupCreatedAt: o.header.createdAt,
      restoredAt: now.toISOString(),
      fromGeneration,
      generation: c.generation.generation,
      versionStep: o.step,
    };
    await writeFileAtomic(join(ctx.layout.dir, RESTORE_RECORD), `${JSON.stringify(record, null, 2)}\n`, {
      mode: 0o644,
    });
    await recordAudit(ctx.db, {
      actor: o.actor,
      action: 'master.restore',
      target: ctx.config.name,
      detail: { from: o.source, ...record, revocationListVersion },
    });
    return {
      fromGeneration,
      generation: c.generation.generation,
      versionStep: o.step,
      revocationListVersion,
    };
  } finally {
    await ctx.close();
  }
}

/** The restore record of master directory `dir`, if it was restored (undefined otherwise). */
export function readRestoreRecord(dir: string): RestoreRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(join(dir, RESTORE_RECORD), 'utf8')) as Partial<RestoreRecord>;
    if (typeof r.backupCreatedAt !== 'string' || typeof r.restoredAt !== 'string') return undefined;
    return r as RestoreRecord;
  } catch {
    return undefined;
  }
}
