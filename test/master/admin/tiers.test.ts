import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeTiers, MAX_TIER } from '../../../master/admin/tiers.js';
import { fleetTables } from '../../../master/admin/status-text.js';
import { decodeStatusReport } from '../../../src/wire/status.js';
import { adminFixture, Browser, insertDepot, report, type AdminFixture } from './helpers.js';

describe('depot tiers: computeTiers', () => {
  const tiers = (pairs: Array<[string, string]>) =>
    Object.fromEntries([...computeTiers(new Map(pairs))].map(([k, v]) => [k, v]));

  it('tier 1 syncs from the master, 2 below a tier-1 depot, 3 below that, whatever the order given', () => {
    expect(
      tiers([
        ['c', 'b'],
        ['b', 'a'],
        ['a', 'master'],
        ['z', 'master'],
      ]),
    ).toEqual({
      a: { tier: 1, parent: null, problem: null },
      b: { tier: 2, parent: 'a', problem: null },
      c: { tier: 3, parent: 'b', problem: null },
      z: { tier: 1, parent: null, problem: null },
    });
  });

  it('an unknown parent gives no tier, with the reason, to the depot and every depot below it', () => {
    const t = tiers([
      ['a', 'ghost'],
      ['b', 'a'],
      ['c', 'master'],
    ]);
    expect(t.a).toEqual({ tier: null, parent: 'ghost', problem: 'upstream ghost is not a known depot' });
    expect(t.b).toEqual({ tier: null, parent: 'a', problem: 'below a, whose tier is unknown' });
    expect(t.c?.tier).toBe(1);
  });

  it('detects cycles (including a depot naming itself) without hanging', () => {
    const t = tiers([
      ['a', 'b'],
      ['b', 'a'],
      ['self', 'self'],
      ['under', 'a'],
      ['ok', 'master'],
    ]);
    expect(t.a).toEqual({ tier: null, parent: 'b', problem: 'upstream cycle: a → b → a' });
    expect(t.b).toEqual({ tier: null, parent: 'a', problem: 'upstream cycle: a → b → a' });
    expect(t.self).toEqual({ tier: null, parent: 'self', problem: 'upstream cycle: self → self' });
    expect(t.under?.problem).toBe('below a, whose tier is unknown');
    expect(t.ok?.tier).toBe(1);
  });

  it('stops a chain deeper than MAX_TIER', () => {
    const chain: Array<[string, string]> = [['d0', 'master']];
    for (let i = 1; i <= MAX_TIER + 5; i++) chain.push([`d${i}`, `d${i - 1}`]);
    const t = computeTiers(new Map(chain.reverse()));
    expect(t.get('d0')?.tier).toBe(1);
    expect([...t.values()].every((v) => v.tier !== null || v.problem !== null)).toBe(true);
    expect([...t.values()].some((v) => v.problem?.includes(`deeper than ${MAX_TIER}`))).toBe(true);
  });

  it('a 1,000-depot fleet in three tiers resolves in one pass', () => {
    const m = new Map<string, string>();
    for (let i = 0; i < 10; i++) m.set(`t1-${i}`, 'master');
    for (let i = 0; i < 90; i++) m.set(`t2-${i}`, `t1-${i % 10}`);
    for (let i = 0; i < 900; i++) m.set(`t3-${i}`, `t2-${i % 90}`);
    const t = computeTiers(m);
    expect(t.get('t3-899')).toEqual({ tier: 3, parent: 't2-89', problem: null });
    expect([...t.values()].filter((v) => v.tier === 2)).toHaveLength(90);
  });
});

describe('status report: upstream field', () => {
  const base = {
    servedGeneration: 1,
    targetGeneration: 1,
    bytesFetched: 0,
    chunksFetched: 0,
    reportedAt: '2031-01-01T00:00:00.000Z',
    sequence: 1,
  };
  it('decodes "master" or a machine name, and refuses anything else by name', () => {
    expect(decodeStatusReport({ ...base, upstream: 'master' }).upstream).toBe('master');
    expect(decodeStatusReport({ ...base, upstream: 'depot-a' }).upstream).toBe('depot-a');
    expect(decodeStatusReport(base).upstream).toBeUndefined();
    for (const bad of ['<img src=x onerror=alert(1)>', '', 'a'.repeat(65), '../x', 7]) {
      expect(() => decodeStatusReport({ ...base, upstream: bad })).toThrow(/upstream/);
    }
  });
});

describe("status model: tiers from the depots' reports", () => {
  let f: AdminFixture;
  beforeAll(async () => {
    f = await adminFixture({ start: Date.parse('2031-03-01T10:00:00.000Z') });
    for (const n of ['hq', 'branch', 'shop', 'loop-a', 'loop-b', 'orphan', 'old', 'enrolled-child'])
      await insertDepot(f.ctx, n);
    // The enrollment's parent counts only until a report says otherwise.
    await f.ctx.db.sql.run("UPDATE machines SET parent = 'hq' WHERE name IN ('enrolled-child', 'shop')");
    await report(f.ctx, 'hq', { servedGeneration: 1, upstream: 'master' });
    await report(f.ctx, 'branch', { servedGeneration: 1, upstream: 'hq' });
    await report(f.ctx, 'shop', { servedGeneration: 1, upstream: 'branch' });
    await report(f.ctx, 'loop-a', { servedGeneration: 1, upstream: 'loop-b' });
    await report(f.ctx, 'loop-b', { servedGeneration: 1, upstream: 'loop-a' });
    await report(f.ctx, 'orphan', { servedGeneration: 1, upstream: 'gone' });
    await report(f.ctx, 'old', { servedGeneration: 1 });
  });
  afterAll(async () => {
    await f?.close();
  });

  it('computes tier and parent per depot for the status API and the status table', async () => {
    const r = await f.app.request('/v1/admin/status?packages=none', {
      headers: { authorization: `Bearer ${f.tokens.viewer}` },
    });
    const s = (await r.json()) as {
      depots: Array<{ name: string; tier: number | null; parent: string | null; tierProblem: string | null }>;
    };
    const by = Object.fromEntries(s.depots.map((d) => [d.name, [d.tier, d.parent, d.tierProblem]]));
    expect(by).toEqual({
      hq: [1, null, null],
      branch: [2, 'hq', null],
      shop: [3, 'branch', null],
      'enrolled-child': [2, 'hq', null],
      old: [1, null, null],
      'loop-a': [null, 'loop-b', 'upstream cycle: loop-a → loop-b → loop-a'],
      'loop-b': [null, 'loop-a', 'upstream cycle: loop-a → loop-b → loop-a'],
      orphan: [null, 'gone', 'upstream gone is not a known depot'],
    });
    const text = fleetTables(await f.admin.status({ packages: false }));
    expect(text).toMatch(/^shop\s+\S+\s+3\s+branch\s/m);
    expect(text).toMatch(/^loop-a\s+\S+\s+\?\s+loop-b\s/m);
    expect(text).toContain('orphan: upstream gone is not a known depot');
  });

  it('the dashboard shows the tier and what it hangs below, escaped', async () => {
    const b = new Browser(f.app);
    await b.login('op-viewer', f.tokens.viewer);
    const page = await (await b.request('/dashboard')).text();
    expect(page).toMatch(/data-tier="3">3 <small>below branch<\/small>/);
    expect(page).toMatch(
      /data-tier="\?">\? <small>below gone<\/small> <small class="err">upstream gone is not a known depot<\/small>/,
    );
  });
});
