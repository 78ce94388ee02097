import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { DEFAULT_SCHEDULE } from '../../depot/config.js';
import { TokenBucket } from '../../depot/sync/bandwidth.js';
import { nextRunAt, planOf, Scheduler, type Timers } from '../../depot/sync/scheduler.js';
import { inWindow, nextInWindow, parseWindow } from '../../depot/sync/window.js';

/** Fake timers: time moves only when the test says so. */
class FakeTimers implements Timers {
  t = Date.parse('2030-01-01T12:00:00Z');
  private queue: Array<{ at: number; fn: () => void; id: number }> = [];
  private ids = 0;
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => {
    const id = ++this.ids;
    this.queue.push({ at: this.t + ms, fn, id });
    return id;
  };
  clearTimeout = (h: unknown) => {
    this.queue = this.queue.filter((q) => q.id !== h);
  };
  /** Advance to the next timer, run it, and let promise callbacks settle. */
  async next(): Promise<number> {
    this.queue.sort((a, b) => a.at - b.at);
    const q = this.queue.shift();
    if (!q) throw new Error('no timer armed');
    this.t = Math.max(this.t, q.at);
    q.fn();
    for (let i = 0; i < 20; i++) await Promise.resolve();
    return this.t;
  }
  get armed(): number {
    return this.queue.length;
  }
}

const MIN = 60_000;
const utcAt = (hhmm: string) => Date.parse(`2030-01-01T${hhmm}:00Z`);

describe('daily window', () => {
  const w = parseWindow('22:00-05:00');
  it('crosses midnight', () => {
    expect(inWindow(w, utcAt('23:30'), 0)).toBe(true);
    expect(inWindow(w, utcAt('04:59'), 0)).toBe(true);
    expect(inWindow(w, utcAt('05:00'), 0)).toBe(false);
    expect(inWindow(w, utcAt('12:00'), 0)).toBe(false);
  });
  it('moves a time outside the window to its next opening, in the given zone', () => {
    expect(nextInWindow(w, utcAt('12:00'), 0)).toBe(utcAt('22:00'));
    expect(nextInWindow(w, utcAt('23:00'), 0)).toBe(utcAt('23:00'));
    // 12:00 UTC is 14:00 at +120 minutes; the window opens at 22:00 local = 20:00 UTC.
    expect(nextInWindow(w, utcAt('12:00'), 120)).toBe(utcAt('20:00'));
  });
  it('refuses a malformed window, naming it', () => {
    expect(() => parseWindow('22-05', 'schedule.window')).toThrow(/schedule.window: expected "HH:MM-HH:MM"/);
    expect(() => parseWindow('05:00-05:00')).toThrow(/equal/);
  });
});

describe('next run planning', () => {
  const plan = planOf({
    ...DEFAULT_SCHEDULE,
    intervalMs: 10 * MIN,
    jitterMs: 2 * MIN,
    backoffBaseMs: 30_000,
    backoffMaxMs: 8 * MIN,
  });
  it('adds jitter to the interval after a success', () => {
    const now = utcAt('12:00');
    expect(nextRunAt(now, 0, plan, () => 0)).toBe(now + 10 * MIN);
    expect(nextRunAt(now, 0, plan, () => 0.5)).toBe(now + 11 * MIN);
  });
  it('backs off exponentially with jitter after failures, capped by the maximum and the interval', () => {
    const now = utcAt('12:00');
    const at = (f: number, r: number) => nextRunAt(now, f, plan, () => r) - now;
    expect(at(1, 0)).toBe(15_000);
    expect(at(1, 1)).toBe(30_000);
    expect(at(2, 1)).toBe(60_000);
    expect(at(3, 1)).toBe(120_000);
    expect(at(10, 1)).toBe(8 * MIN);
    expect(at(10, 0)).toBe(4 * MIN);
  });
  it('moves runs into the window', () => {
    const p = planOf({
      ...DEFAULT_SCHEDULE,
      intervalMs: 10 * MIN,
      jitterMs: 0,
      window: '22:00-05:00',
      windowUtc: true,
    });
    expect(nextRunAt(utcAt('12:00'), 0, p, () => 0)).toBe(utcAt('22:00'));
    expect(nextRunAt(utcAt('22:30'), 0, p, () => 0)).toBe(utcAt('22:40'));
  });
});

describe('Scheduler', () => {
  it('runs on its interval, backs off on failure, and recovers', async () => {
    const timers = new FakeTimers();
    const outcomes = [true, false, false, true];
    let runs = 0;
    const s = new Scheduler({
      name: 'sync',
      logger: silentLogger(),
      timers,
      random: () => 0,
      plan: planOf({
        ...DEFAULT_SCHEDULE,
        intervalMs: 10 * MIN,
        jitterMs: 0,
        backoffBaseMs: 60_000,
        backoffMaxMs: 10 * MIN,
      }),
      task: async () => {
        const ok = outcomes[runs++];
        if (!ok) throw new Error('upstream unreachable');
        return ok;
      },
    });
    const t0 = timers.t;
    s.start();
    expect(await timers.next()).toBe(t0); // first run at once
    expect(s.nextAt).toBe(t0 + 10 * MIN);
    expect(await timers.next()).toBe(t0 + 10 * MIN); // fails
    expect(s.failures).toBe(1);
    expect(s.lastError).toBe('upstream unreachable');
    expect(s.nextAt).toBe(t0 + 10 * MIN + 30_000);
    await timers.next(); // fails again
    expect(s.nextAt).toBe(timers.t + 60_000);
    await timers.next(); // succeeds
    expect(s.failures).toBe(0);
    expect(s.nextAt).toBe(timers.t + 10 * MIN);
    expect(runs).toBe(4);
    await s.stop();
    expect(timers.armed).toBe(0);
  });

  it('never runs twice at once: runNow joins the run in progress', async () => {
    const timers = new FakeTimers();
    let release!: () => void;
    let runs = 0;
    const s = new Scheduler({
      name: 'sync',
      logger: silentLogger(),
      timers,
      plan: planOf(DEFAULT_SCHEDULE),
      task: () => {
        runs++;
        return new Promise<number>((r) => (release = () => r(runs)));
      },
    });
    const a = s.runNow();
    const b = s.runNow();
    expect(a).toBe(b);
    expect(s.running).toBe(true);
    release();
    expect(await a).toBe(1);
    expect(runs).toBe(1);
    await s.stop();
  });
});

describe('TokenBucket', () => {
  it('holds the received-byte rate by making readers wait', async () => {
    let t = 0;
    const slept: number[] = [];
    const bucket = new TokenBucket(100_000, {
      burstBytes: 10_000,
      now: () => t,
      sleep: async (ms) => {
        slept.push(ms);
        t += ms;
      },
    });
    await bucket.take(10_000); // the burst
    expect(slept).toEqual([]);
    await bucket.take(50_000);
    expect(slept).toEqual([500]);
    t += 1000; // idle: refills up to the burst only
    await bucket.take(10_000);
    expect(slept).toEqual([500]);
    for (let i = 0; i < 10; i++) await bucket.take(100_000);
    expect(t).toBeGreaterThanOrEqual(1500 + 10_000);
  });
});

describe('live changes (configuration reload)', () => {
  it('setPlan plans the next run again under the new interval', async () => {
    const timers = new FakeTimers();
    let runs = 0;
    const s = new Scheduler({
      name: 'sync',
      logger: silentLogger(),
      timers,
      random: () => 0,
      plan: planOf({ ...DEFAULT_SCHEDULE, intervalMs: 60 * MIN, jitterMs: 0 }),
      task: async () => ++runs,
    });
    s.start();
    await timers.next();
    expect(s.nextAt).toBe(timers.t + 60 * MIN);
    timers.t += 5 * MIN;
    s.setPlan(planOf({ ...DEFAULT_SCHEDULE, intervalMs: 10 * MIN, jitterMs: 0 }));
    expect(s.nextAt).toBe(timers.t + 10 * MIN);
    expect(timers.armed).toBe(1);
    expect(await timers.next()).toBe(timers.t);
    expect(runs).toBe(2);
    expect(s.nextAt).toBe(timers.t + 10 * MIN);
    await s.stop();
    // Stopped: a new plan arms nothing.
    s.setPlan(planOf(DEFAULT_SCHEDULE));
    expect(timers.armed).toBe(0);
  });

  it('TokenBucket.setRate sets, changes and lifts the limit', async () => {
    let t = 0;
    const slept: number[] = [];
    const bucket = new TokenBucket(0, {
      now: () => t,
      sleep: async (ms) => {
        slept.push(ms);
        t += ms;
      },
    });
    await bucket.take(10_000_000); // unlimited
    expect(slept).toEqual([]);
    bucket.setRate(100_000);
    expect(bucket.rate).toBe(100_000);
    await bucket.take(65_536 + 100_000); // the burst (64 KiB minimum), then one second of debt
    expect(slept).toEqual([1000]);
    bucket.setRate(0);
    await bucket.take(10_000_000);
    expect(slept).toEqual([1000]);
    expect(() => bucket.setRate(-1)).toThrow(/bytesPerSecond must be an integer from 0/);
  });
});
