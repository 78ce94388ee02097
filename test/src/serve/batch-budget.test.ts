import { describe, expect, it } from 'vitest';
import { BatchBudget, RecentlyVerified } from '../../../src/serve/batch-budget.js';

describe('BatchBudget', () => {
  it('gives one response large runs and shrinks each share as responses are added, never below one 64 KiB run', () => {
    const budget = new BatchBudget(64 * 1024 * 1024);
    const one = budget.acquire();
    expect(one).toMatchObject({ runBytes: 1024 * 1024, aheadRuns: 4, flushBytes: 1024 * 1024 });
    const more = Array.from({ length: 199 }, () => budget.acquire());
    const last = more.at(-1)!;
    expect(budget.inFlight).toBe(200);
    // 200 responses: each may hold ~320 KiB (read-ahead plus what waits on its socket), not 4 MiB.
    expect(last.runBytes).toBe(81_920);
    expect(last.runBytes * (last.aheadRuns + 2)).toBeLessThanOrEqual(
      Math.ceil((64 * 1024 * 1024) / 200) + 64 * 1024,
    );
    const tiny = new BatchBudget(64 * 1024).acquire();
    expect(tiny).toMatchObject({ runBytes: 64 * 1024, aheadRuns: 1 });
  });

  it('counts a release once and refuses a budget below one run', () => {
    const budget = new BatchBudget(1024 * 1024);
    const a = budget.acquire();
    a.release();
    a.release();
    expect(budget.inFlight).toBe(0);
    expect(() => new BatchBudget(1000)).toThrow(/batch memory budget/);
  });
});

describe('RecentlyVerified', () => {
  it('is fresh only within the ttl, and forgets the oldest beyond its bound', () => {
    let t = 1000;
    const r = new RecentlyVerified(2, 500, () => t);
    expect(r.fresh('a')).toBe(false);
    r.add('a');
    expect(r.fresh('a')).toBe(true);
    t += 500;
    expect(r.fresh('a')).toBe(false); // expired: checked again
    r.add('a');
    r.add('b');
    r.add('c');
    expect(r.fresh('a')).toBe(false); // evicted
    expect(r.fresh('b') && r.fresh('c')).toBe(true);
  });
});
