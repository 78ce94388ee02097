import { DepotsyncError } from '../../src/errors.js';
import { recordAudit } from '../db/audit.js';
import { transaction, type MasterDb } from '../db/database.js';

export interface RetentionResult {
  statusPruned: number;
  auditPruned: number;
}

const DAY_MS = 86_400_000;

function days(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new DepotsyncError(
      'bad-input',
      `pruneHistory: ${name} must be an integer >= 1, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/**
 * Delete depot status reports older than `statusRetentionDays` (each depot's latest report stays: it is
 * the depot's current state and the replay guard of its next report) and audit entries older than
 * `auditRetentionDays`. The prune itself is audit-logged, so the trail shows where it was cut.
 */
export async function pruneHistory(
  m: MasterDb,
  opts: { statusRetentionDays: number; auditRetentionDays: number; actor?: string },
): Promise<RetentionResult> {
  const nowMs = m.now().getTime();
  const statusCutoff = new Date(
    nowMs - days(opts.statusRetentionDays, 'statusRetentionDays') * DAY_MS,
  ).toISOString();
  const auditCutoff = new Date(
    nowMs - days(opts.auditRetentionDays, 'auditRetentionDays') * DAY_MS,
  ).toISOString();
  return transaction(m, async () => {
    const statusPruned = (
      await m.sql.run(
        `DELETE FROM depot_status WHERE received_at < ?
           AND id NOT IN (SELECT MAX(id) FROM depot_status GROUP BY machine)`,
        [statusCutoff],
      )
    ).changes;
    const auditPruned = (await m.sql.run('DELETE FROM audit_log WHERE at < ?', [auditCutoff])).changes;
    if (statusPruned + auditPruned > 0) {
      await recordAudit(m, {
        actor: opts.actor ?? 'system',
        action: 'history.prune',
        target: 'database',
        detail: { statusPruned, auditPruned, statusBefore: statusCutoff, auditBefore: auditCutoff },
      });
    }
    return { statusPruned, auditPruned };
  });
}
