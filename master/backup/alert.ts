import type { Alert } from '../admin/alerts.js';
import type { MasterDb } from '../db/database.js';
import { AUDIT_TARGET } from './backup.js';

/**
 * The "backup failed" alert, derived like every alert: it is active while the LATEST
 * backup outcome in the audit log (`database.backup` or `database.backup-failed`, scheduled or one-off,
 * from any process) is a failure, so it clears by itself on the next successful backup.
 */
export async function backupAlerts(m: MasterDb): Promise<Alert[]> {
  const row = await m.sql.get<{ action: string; at: string; detail: string }>(
    `SELECT action, at, detail FROM audit_log WHERE target = ? AND action IN ('database.backup', 'database.backup-failed') ORDER BY id DESC LIMIT 1`,
    [AUDIT_TARGET],
  );
  if (!row || row.action !== 'database.backup-failed') return [];
  let error = 'unknown error';
  try {
    const d = JSON.parse(row.detail) as { error?: unknown };
    if (typeof d.error === 'string') error = d.error;
  } catch {
    // keep the generic reason
  }
  return [
    {
      key: 'backup:master.db',
      kind: 'backup',
      subject: 'master.db',
      level: 'error',
      message: `master backup failed at ${row.at}: ${error}`,
    },
  ];
}
