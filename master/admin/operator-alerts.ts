import type { MasterDb } from '../db/database.js';
import { listOperators } from '../db/operators.js';
import type { Alert } from './alerts.js';

const DAY_MS = 86_400_000;

/**
 * Operator tokens about to expire (warning, `warningDays` before) or expired (error), for enabled
 * operators; derived like every alert, so rotating the token clears it.
 */
export async function operatorTokenAlerts(m: MasterDb, warningDays: number, nowMs: number): Promise<Alert[]> {
  const out: Alert[] = [];
  for (const op of await listOperators(m)) {
    if (op.disabled || op.tokenExpiresAt === null) continue;
    const leftMs = Date.parse(op.tokenExpiresAt) - nowMs;
    const day = op.tokenExpiresAt.slice(0, 10);
    const rotate = `rotate it with \`depotsync master operator rotate --name ${op.name}\``;
    const base = { key: `operator-token:${op.name}`, kind: 'operator-token' as const, subject: op.name };
    if (leftMs <= 0)
      out.push({
        ...base,
        level: 'error',
        message: `token of operator ${op.name} expired on ${day}; ${rotate}`,
      });
    else if (warningDays > 0 && leftMs <= warningDays * DAY_MS) {
      const days = Math.ceil(leftMs / DAY_MS);
      out.push({
        ...base,
        level: 'warning',
        message: `token of operator ${op.name} expires in ${days} day(s) (${day}); ${rotate}`,
      });
    }
  }
  return out;
}
