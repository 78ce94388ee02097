import type { MasterContext } from '../context.js';
import { collectMasterGarbage, type MasterGcResult } from './gc.js';
import { pruneHistory, type RetentionResult } from './retention.js';

export interface MaintenanceResult {
  gc: MasterGcResult;
  retention: RetentionResult;
}

/** One maintenance pass: chunk GC, then status and audit retention. */
export async function runMaintenance(
  ctx: MasterContext,
  opts: { graceMs?: number; actor?: string } = {},
): Promise<MaintenanceResult> {
  const gc = await collectMasterGarbage(ctx, opts);
  const retention = await pruneHistory(ctx.db, {
    statusRetentionDays: ctx.config.statusRetentionDays,
    auditRetentionDays: ctx.config.auditRetentionDays,
    ...(opts.actor ? { actor: opts.actor } : {}),
  });
  return { gc, retention };
}

export interface MaintenanceSchedule {
  /** Run one pass now (tests; the schedule goes on from it). */
  runNow(): Promise<MaintenanceResult | undefined>;
  stop(): Promise<void>;
}

/**
 * Maintenance while `master serve` runs: every `gcIntervalHours`, counted from the last GC on record (a
 * restart neither postpones an overdue pass nor repeats a fresh one). A failure is logged and retried at
 * the next interval; it never stops serving. One pass at a time.
 */
export function startMaintenanceSchedule(
  ctx: MasterContext,
  opts: { intervalMs?: number; graceMs?: number } = {},
): MaintenanceSchedule | undefined {
  const intervalMs = opts.intervalMs ?? ctx.config.gcIntervalHours * 3_600_000;
  if (intervalMs <= 0) return undefined;
  const log = ctx.log.child({ component: 'master.gc' });
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<MaintenanceResult | undefined> | undefined;
  let stopped = false;

  const run = (): Promise<MaintenanceResult | undefined> => {
    running ??= runMaintenance(ctx, {
      actor: 'schedule',
      ...(opts.graceMs === undefined ? {} : { graceMs: opts.graceMs }),
    })
      .catch((e: unknown) => {
        log.error(
          { err: (e as Error).message },
          'scheduled maintenance failed; will retry at the next interval',
        );
        return undefined;
      })
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
  // The first run is planned from the last GC on record (read without blocking the caller).
  ctx.db.sql
    .get<{ at: string }>("SELECT at FROM audit_log WHERE action = 'store.gc' ORDER BY id DESC LIMIT 1")
    .then(
      (r) => plan(r ? Date.parse(r.at) + intervalMs - ctx.db.now().getTime() : intervalMs),
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
