import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

/**
 * The README's first command, end to end: master, depot-a, depot-b (tiered below depot-a) and an agent,
 * each a separate process on 127.0.0.1. The demo itself checks the agent's output bytes against what
 * was published, and fails (non-zero) on any step.
 */
describe('depotsync demo', () => {
  it('publishes, syncs two tiers, fetches verified bytes, and moves only changed chunks on a new version', () => {
    const r = runCli(['demo', '--bytes', String(8 * 1024 * 1024), '--edits', '10', '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const steps = Object.fromEntries(
      (r.json.steps as Array<{ step: string; detail: string }>).map((s) => [s.step, s.detail]),
    );
    expect(r.json.ok).toBe(true);
    expect(steps['verify setup@1.0 bytes']).toBe('identical to what was published');
    expect(steps['verify setup@1.1 bytes']).toBe('identical to what was published');
    expect(steps['depot-b init (token)']).toMatch(/approved, parent https:\/\/127\.0\.0\.1:\d+/);
    // The delta sync moved far fewer bytes than the package holds.
    const delta = /generation 3: (\d+) chunks, (\d+) bytes/.exec(steps['depot-a delta sync'] ?? '');
    expect(delta).not.toBeNull();
    // 10 edits touch at most ~2 chunks each (≤ 256 KiB per chunk, ~64 KiB on average).
    expect(Number(delta![2])).toBeLessThan(8 * 1024 * 1024 * 0.4);
    expect(Number(delta![2])).toBeGreaterThan(0);
  }, 180_000);
});
