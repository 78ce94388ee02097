import type { Logger } from '../../src/log.js';
import type { ScheduleConfig } from '../config.js';
import {
  inWindow,
  localOffsetMin,
  nextInWindow,
  parseWindow,
  windowLengthMs,
  type DailyWindow,
} from './window.js';

/** Injected time: tests drive the scheduler with a fake clock instead of sleeping. */
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export type SchedulePlan = Pick<
  ScheduleConfig,
  'intervalMs' | 'jitterMs' | 'backoffBaseMs' | 'backoffMaxMs'
> & {
  window?: DailyWindow | undefined;
  /** Minutes east of UTC the window is read in (fixed in tests; the machine's zone otherwise). */
  offsetMin?: number | undefined;
};

export function planOf(s: ScheduleConfig): SchedulePlan {
  return {
    ...s,
    window: s.window ? parseWindow(s.window, 'schedule.window') : undefined,
    offsetMin: s.windowUtc ? 0 : undefined,
  };
}

/**
 * When to run next. After a success: the interval plus a random jitter. After `failures` failures in a
 * row: exponential backoff with equal jitter (half fixed, half random), never longer than a regular
 * interval. Either way moved into the daily window if there is one, spread over its first minutes.
 */
export function nextRunAt(now: number, failures: number, p: SchedulePlan, random: () => number): number {
  let t: number;
  if (failures === 0) {
    t = now + p.intervalMs + Math.floor(random() * p.jitterMs);
  } else {
    t =
      now +
      Math.min(p.intervalMs + p.jitterMs, backoffDelayMs(failures, p.backoffBaseMs, p.backoffMaxMs, random));
  }
  return intoWindow(t, p, random);
}

/**
 * Exponential backoff with equal jitter (half fixed, half random) after `failures` (>= 1)
 * failures in a row, at most maxMs.
 */
export function backoffDelayMs(
  failures: number,
  baseMs: number,
  maxMs: number,
  random: () => number,
): number {
  const base = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(failures, 1) - 1, 30));
  return Math.floor(base / 2 + random() * (base / 2));
}

function intoWindow(t: number, p: SchedulePlan, random: () => number): number {
  if (!p.window) return t;
  const offset = p.offsetMin ?? localOffsetMin(t);
  const moved = nextInWindow(p.window, t, offset);
  if (moved === t) return t;
  return moved + Math.floor(random() * Math.min(p.jitterMs, windowLengthMs(p.window) / 2));
}

/**
 * Runs a task on a schedule (the depot's sync, its scrub): one run at a time, the next planned when
 * the current one ends, backoff on failure. `runNow` starts a run at once (or joins the running one)
 * and re-plans from its end. While runs fail, nothing else changes: the depot keeps serving the last
 * good generation.
 */
export class Scheduler<T> {
  failures = 0;
  nextAt: number | undefined;
  lastError: string | undefined;
  private timer: unknown;
  private inflight: Promise<T> | undefined;
  private stopped = true;
  private readonly timers: Timers;
  private readonly random: () => number;

  constructor(
    private readonly o: {
      name: string;
      task: () => Promise<T>;
      plan: SchedulePlan;
      logger: Logger;
      timers?: Timers;
      random?: () => number;
      onResult?: (r: { ok: true; value: T } | { ok: false; error: unknown }) => void;
    },
  ) {
    this.timers = o.timers ?? realTimers;
    this.random = o.random ?? Math.random;
  }

  /** Start: the first run after `firstDelayMs` (moved into the window when there is one). */
  start(firstDelayMs = 0): void {
    this.stopped = false;
    this.arm(intoWindow(this.timers.now() + firstDelayMs, this.o.plan, this.random));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.nextAt = undefined;
    await this.inflight?.catch(() => undefined);
  }

  /**
   * A new plan (a configuration reload): a run in progress finishes and plans under it; a planned run is
   * planned again as if the last one ended now.
   */
  setPlan(plan: SchedulePlan): void {
    (this.o as { plan: SchedulePlan }).plan = plan;
    if (!this.stopped && !this.inflight)
      this.arm(nextRunAt(this.timers.now(), this.failures, plan, this.random));
  }

  /** Is `t` inside the daily window (always true without one)? */
  inWindow(t = this.timers.now()): boolean {
    const w = this.o.plan.window;
    return !w || inWindow(w, t, this.o.plan.offsetMin ?? localOffsetMin(t));
  }

  get running(): boolean {
    return this.inflight !== undefined;
  }

  /** Run now (single flight: joins a run in progress), then plan the next run from its end. */
  runNow(): Promise<T> {
    if (this.inflight) return this.inflight;
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    const run = this.o.task();
    this.inflight = run;
    run
      .then(
        (value) => {
          this.failures = 0;
          this.lastError = undefined;
          this.o.onResult?.({ ok: true, value });
        },
        (error: unknown) => {
          this.failures++;
          this.lastError = (error as Error)?.message ?? String(error);
          this.o.logger.warn(
            { task: this.o.name, failures: this.failures, err: this.lastError },
            `${this.o.name} failed; will retry`,
          );
          this.o.onResult?.({ ok: false, error });
        },
      )
      .finally(() => {
        this.inflight = undefined;
        if (!this.stopped) this.arm(nextRunAt(this.timers.now(), this.failures, this.o.plan, this.random));
      });
    return run;
  }

  private arm(at: number): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.nextAt = at;
    const delay = Math.max(0, at - this.timers.now());
    this.o.logger.debug(
      { task: this.o.name, inMs: delay, at: new Date(at).toISOString() },
      `next ${this.o.name} planned`,
    );
    this.timer = this.timers.setTimeout(() => {
      this.timer = undefined;
      this.runNow().catch(() => undefined);
    }, delay);
  }
}
