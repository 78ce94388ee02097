import { describe, expect, it } from 'vitest';
import { runKillLoop } from '../../bench/kill-loop.js';

/**
 * The short version of bench/kill-loop.ts (run that for 1000 kills): real processes killed with
 * SIGKILL at random instants, every invariant checked after each kill.
 */
describe('kill -9 loop (real processes)', () => {
  it('keeps every invariant across random kills of publish, serve, sync, import and fetch', async () => {
    const lines: string[] = [];
    const r = await runKillLoop({
      kills: Number(process.env.KILL_LOOP_KILLS ?? 3),
      seed: Number(process.env.KILL_SEED ?? 1),
      log: (l) => lines.push(l),
    });
    expect(r.failures, lines.join('\n')).toEqual([]);
    expect(r.kills).toBeGreaterThanOrEqual(3);
    expect(r.checks).toBeGreaterThan(r.kills);
  }, 120_000);
});
