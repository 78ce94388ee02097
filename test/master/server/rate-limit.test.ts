import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../../master/server/rate-limit.js';

describe('RateLimiter (token bucket per key)', () => {
  it('serves a burst of perMinute, then refuses that key while others are served', () => {
    let t = 0;
    const l = new RateLimiter({ perMinute: 10, clockMs: () => t });
    const results = Array.from({ length: 1000 }, () => l.take('10.0.0.1').ok);
    expect(results.filter(Boolean)).toHaveLength(10);
    expect(results.slice(0, 10).every(Boolean)).toBe(true);
    const refused = l.take('10.0.0.1');
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.retryAfterMs).toBe(6000);
    expect(l.take('10.0.0.2').ok).toBe(true);
  });

  it('earns tokens back evenly over the minute, never more than perMinute', () => {
    let t = 0;
    const l = new RateLimiter({ perMinute: 60, clockMs: () => t });
    for (let i = 0; i < 60; i++) l.take('a');
    expect(l.take('a').ok).toBe(false);
    t += 1000;
    expect(l.take('a').ok).toBe(true);
    expect(l.take('a').ok).toBe(false);
    t += 3_600_000;
    expect(Array.from({ length: 100 }, () => l.take('a').ok).filter(Boolean)).toHaveLength(60);
  });

  it('bounds memory: full buckets are swept and at most maxKeys are tracked', () => {
    let t = 0;
    const l = new RateLimiter({ perMinute: 5, clockMs: () => t, maxKeys: 100 });
    for (let i = 0; i < 1000; i++) l.take(`k${i}`);
    expect(l.size).toBe(100);
    t += 120_000;
    l.take('fresh');
    expect(l.size).toBe(1);
  });

  it('validates its options, naming the option and the value', () => {
    expect(() => new RateLimiter({ perMinute: 0 })).toThrow(/perMinute must be an integer >= 1, got 0/);
    expect(() => new RateLimiter({ perMinute: 1, maxKeys: 1.5 })).toThrow(/maxKeys/);
  });
});
