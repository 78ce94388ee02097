import type { MasterDb } from '../db/database.js';
import { storedRoles, type StoredRole } from '../trust/stored.js';
import type { Alert, AlertLevel } from './alerts.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Root expiry stages: a warning from 60 days, again (daily, by the monitor) through 30, an error from 7. */
export const ROOT_ALERT_DAYS = { warning: 60, error: 7 } as const;

/**
 * Online roles: `master serve` re-signs them well before they expire (timestamp at 12 h left, snapshot
 * at 3 days, targets and bins at 30 days by default). Less than this left means the re-signing is not
 * happening (master stopped, key unreadable): the role would expire before its next re-signing.
 */
export const ONLINE_ALERT_MS: Record<Exclude<StoredRole['role'], 'root'>, number> = {
  timestamp: 6 * HOUR,
  snapshot: DAY,
  targets: 7 * DAY,
  bins: 7 * DAY,
};

function left(ms: number): string {
  if (ms < 2 * DAY) return `${Math.max(0, Math.floor(ms / HOUR))} h`;
  return `${Math.floor(ms / DAY)} day(s)`;
}

/**
 * Alerts about the master's own signed metadata (derived like every alert, so they clear once the role
 * is renewed). Depots and agents refuse expired metadata, so an expired root stops the whole fleet.
 */
export async function keyAlerts(db: MasterDb, nowMs: number): Promise<Alert[]> {
  const out: Alert[] = [];
  for (const r of await storedRoles(db)) {
    if (!r.expires) continue;
    const ms = Date.parse(r.expires) - nowMs;
    const date = r.expires.slice(0, 10);
    let level: AlertLevel | undefined;
    let message = '';
    if (r.role === 'root') {
      if (ms > ROOT_ALERT_DAYS.warning * DAY) continue;
      level = ms <= ROOT_ALERT_DAYS.error * DAY ? 'error' : 'warning';
      message =
        ms <= 0
          ? `root metadata v${r.version} expired on ${date}: depots and agents refuse this master's catalog until a new root is signed`
          : `root metadata v${r.version} expires in ${left(ms)} (${date}); then depots and agents refuse this master's catalog: renew it (depotsync master root renew; with the root keys offline, sign the request and import it)`;
    } else {
      if (ms > ONLINE_ALERT_MS[r.role]) continue;
      level = ms <= 0 ? 'error' : 'warning';
      message =
        ms <= 0
          ? `${r.role} metadata expired on ${r.expires}: depots and agents refuse it; is depotsync master serve running with its ${r.role === 'bins' ? 'bins (or targets)' : r.role} key?`
          : `${r.role} metadata expires in ${left(ms)} (${r.expires}) and has not been re-signed: is depotsync master serve running with its ${r.role === 'bins' ? 'bins (or targets)' : r.role} key?`;
    }
    out.push({ key: `metadata-expiry:${r.role}`, kind: 'metadata-expiry', subject: r.role, level, message });
  }
  return out;
}
