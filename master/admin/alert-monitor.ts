import type { Logger } from '../../src/log.js';
import { transaction, type MasterDb } from '../db/database.js';
import type { Alert, AlertLevel } from './alerts.js';
import { backupAlerts } from '../backup/alert.js';
import { operatorTokenAlerts } from './operator-alerts.js';
import type { MailNotifier } from './mail.js';
import type { WebhookEvent, WebhookNotifier } from './webhook.js';

/**
 * Alert state across evaluations (table `alert_state`, so a restart neither forgets nor re-announces):
 *   new condition              -> raised    (log at warn/error, webhook, e-mail, metrics)
 *   still true, level changed  -> raised again with the new level
 *   still true after repeatMs  -> repeated  (a certificate warning every day, as the issue asks)
 *   no longer true             -> cleared   (log at info, webhook, e-mail)
 * `evaluate` returns the active alerts with the time each was first raised.
 */
export interface AlertTransition {
  event: WebhookEvent['event'];
  alert: Alert;
}

interface StateRow {
  key: string;
  kind: string;
  subject: string;
  level: AlertLevel;
  message: string;
  raised_at: string;
  last_notified_at: string;
}

export interface AlertMonitorDeps {
  db: MasterDb;
  log: Logger;
  masterName: string;
  repeatMs: number;
  webhook?: WebhookNotifier | undefined;
  mail?: MailNotifier | undefined;
  onTransition?: (t: AlertTransition) => void;
  /** Warn this many days before an operator token expires (master.json); 0 or absent = no warning. */
  operatorTokenWarningDays?: number;
}

export class AlertMonitor {
  private readonly log: Logger;
  raisedTotal = 0;
  clearedTotal = 0;

  constructor(private readonly d: AlertMonitorDeps) {
    this.log = d.log.child({ component: 'master.alerts' });
  }

  async evaluate(
    conditions: Alert[],
    nowMs: number,
  ): Promise<{ active: Alert[]; transitions: AlertTransition[] }> {
    const { db } = this.d;
    // Conditions the status model does not see: the master's own database backups (master/backup).
    // and operator tokens about to expire.
    const tokens = await operatorTokenAlerts(db, this.d.operatorTokenWarningDays ?? 0, nowMs);
    const current = [...conditions, ...(await backupAlerts(db)), ...tokens];
    const now = new Date(nowMs).toISOString();
    const transitions: AlertTransition[] = [];
    const active = await transaction(db, async () => {
      const known = new Map(
        (await db.sql.all<StateRow>('SELECT * FROM alert_state WHERE cleared_at IS NULL')).map((r) => [
          r.key,
          r,
        ]),
      );
      const out: Alert[] = [];
      for (const a of current) {
        const row = known.get(a.key);
        known.delete(a.key);
        if (!row) {
          await db.sql.run(
            `INSERT INTO alert_state (key, kind, subject, level, message, raised_at, last_notified_at, cleared_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)
               ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, subject = excluded.subject, level = excluded.level, message = excluded.message,
                 raised_at = excluded.raised_at, last_notified_at = excluded.last_notified_at, cleared_at = NULL`,
            [a.key, a.kind, a.subject, a.level, a.message, now, now],
          );
          transitions.push({ event: 'raised', alert: { ...a, since: now } });
          out.push({ ...a, since: now });
          continue;
        }
        const levelChanged = row.level !== a.level;
        const due = nowMs - Date.parse(row.last_notified_at) >= this.d.repeatMs;
        if (levelChanged || due) {
          await db.sql.run(
            'UPDATE alert_state SET level = ?, message = ?, last_notified_at = ? WHERE key = ?',
            [a.level, a.message, now, a.key],
          );
          transitions.push({
            event: levelChanged ? 'raised' : 'repeated',
            alert: { ...a, since: row.raised_at },
          });
        } else if (row.message !== a.message) {
          await db.sql.run('UPDATE alert_state SET message = ? WHERE key = ?', [a.message, a.key]);
        }
        out.push({ ...a, since: row.raised_at });
      }
      for (const row of known.values()) {
        await db.sql.run('UPDATE alert_state SET cleared_at = ? WHERE key = ?', [now, row.key]);
        transitions.push({
          event: 'cleared',
          alert: {
            key: row.key,
            kind: row.kind as Alert['kind'],
            subject: row.subject,
            level: row.level,
            message: row.message,
            since: row.raised_at,
          },
        });
      }
      return out;
    });
    for (const t of transitions) this.announce(t, now);
    return { active, transitions };
  }

  private announce(t: AlertTransition, at: string): void {
    const { alert } = t;
    const fields = { alert: alert.key, level: alert.level, since: alert.since };
    if (t.event === 'cleared') {
      this.clearedTotal++;
      this.log.info(fields, `alert cleared: ${alert.message}`);
    } else {
      if (t.event === 'raised') this.raisedTotal++;
      if (alert.level === 'error') this.log.error(fields, `alert ${t.event}: ${alert.message}`);
      else this.log.warn(fields, `alert ${t.event}: ${alert.message}`);
    }
    const e: WebhookEvent = { event: t.event, master: this.d.masterName, at, alert };
    this.d.webhook?.notify(e);
    this.d.mail?.notify(e);
    this.d.onTransition?.(t);
  }
}
