import type { MasterContext } from '../context.js';
import { AUDIT_TARGET, type BackupResult } from './backup.js';
import { backupOpenMaster } from './run.js';

/**
 * Scheduled backups (backup.ts) while `master serve` runs: every `backupIntervalHours`,
 * counted from the last successful backup on record (a restart does not postpone an overdue backup,
 * nor repeat a fresh one). A failure is logged and audit-logged (which raises the alert, alert.ts) and
 * retried at the next interval; it never stops serving. One backup at a time.
 */
export interface BackupSchedule {
  /** Run one backup now (tests; the schedule goes on from it). */
  runNow(): Promise<BackupResult | undefined>;
  stop(): Promise<void>;
}

export function startBackupSchedule(
  ctx: MasterContext,
  opts: { intervalMs?: number; now?: () => Date } = {},
): BackupSchedule | undefined {
  const intervalMs = opts.intervalMs ?? ctx.config.backupIntervalHours * 3_600_000;
  if (intervalMs <= 0) return undefined;
  const now = opts.now ?? (() => new Date());
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<BackupResult | undefined> | undefined;
  let stopped = false;

  const run = (): Promise<BackupResult | undefined> => {
    running ??= backupOpenMaster(ctx, { actor: 'schedule', now })
      .catch(() => undefined) // logged and audit-logged by backupMaster
      .finally(() => {
        running = undefined;
        plan(intervalMs);
      });
    return running;
  };
  const plan = (delayMs: number) => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(() => void run(), Math.max(0, Math.min(delayMs, 2 ** 31 - 1)));
    timer.unref();
  };
  // The first run is planned from the last backup on record (read without blocking the caller).
  ctx.db.sql
    .get<{ at: string }>(
      "SELECT at FROM audit_log WHERE target = ? AND action = 'database.backup' ORDER BY id DESC LIMIT 1",
      [AUDIT_TARGET],
    )
    .then(
      (r) => plan(r ? Date.parse(r.at) + intervalMs - now().getTime() : intervalMs),
      () => plan(intervalMs),
    );
  return {
    runNow: run,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
