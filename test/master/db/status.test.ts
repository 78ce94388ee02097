import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MasterDb } from '../../../master/db/database.js';
import { requestEnrollment } from '../../../master/db/machines.js';
import { listAudit } from '../../../master/db/audit.js';
import {
  latestStatusAll,
  recordDepotStatus,
  SEQUENCE_JUMP_LIMIT,
  statusHistory,
  type DepotStatusInput,
} from '../../../master/db/status.js';
import { caught, testMaster, type TestMaster } from './helpers.js';

let t: TestMaster;
let m: MasterDb;
beforeEach(async () => {
  t = await testMaster();
  m = t.m;
  const csrPem = '-----BEGIN CERTIFICATE REQUEST-----\nMII\n-----END CERTIFICATE REQUEST-----\n';
  for (const name of ['d1', 'd2']) await requestEnrollment(m, { name, role: 'depot', csrPem });
  await requestEnrollment(m, { name: 'pc', role: 'agent', csrPem });
  // The master has signed generations 1 to 20: reports are checked against them.
  for (let i = 1; i <= 20; i++) {
    await m.sql.run(
      "INSERT INTO generations (generation, created_at, created_by) VALUES (?, '2030-01-01T00:00:00.000Z', 'test')",
      [i],
    );
  }
});
afterEach(() => t.cleanup());

const report = (
  sequence: number,
  served: number,
  extra: Partial<DepotStatusInput> = {},
): DepotStatusInput => ({
  servedGeneration: served,
  targetGeneration: served + 1,
  bytesFetched: 1000 * sequence,
  chunksFetched: sequence,
  reportedAt: '2030-01-01T00:00:00.000Z',
  sequence,
  ...extra,
});

describe('depot status', () => {
  it('keeps the latest report per depot and ignores replays', async () => {
    expect(await recordDepotStatus(m, 'd1', report(1, 3), { address: '10.0.0.1' })).toBe('recorded');
    t.clock.advance(1000);
    expect(
      await recordDepotStatus(m, 'd1', report(2, 4, { lastError: 'network: timeout', scrubFailed: 1 })),
    ).toBe('recorded');
    expect(await recordDepotStatus(m, 'd2', report(1, 4, { lastSuccess: '2030-01-01T00:00:00.000Z' }))).toBe(
      'recorded',
    );
    // An old report replayed later does not overwrite newer status.
    expect(await recordDepotStatus(m, 'd1', report(2, 1))).toBe('stale');
    expect(await recordDepotStatus(m, 'd1', report(1, 1))).toBe('stale');
    const latest = await latestStatusAll(m);
    expect(latest.map((s) => [s.machine, s.sequence, s.servedGeneration])).toEqual([
      ['d1', 2, 4],
      ['d2', 1, 4],
    ]);
    expect(latest[0]).toMatchObject({
      lastError: 'network: timeout',
      scrubFailed: 1,
      bytesRemaining: 0,
      receivedAt: '2030-01-01T00:00:01.000Z',
    });
    expect(latest[0]?.address).toBeUndefined();
    expect(latest[1]?.lastSuccess).toBe('2030-01-01T00:00:00.000Z');
    expect(latest[0]?.report).toMatchObject({ sequence: 2, servedGeneration: 4 });
  });

  it('keeps a bounded history per depot', async () => {
    for (let s = 1; s <= 8; s++) await recordDepotStatus(m, 'd1', report(s, s), { historyPerDepot: 5 });
    await recordDepotStatus(m, 'd2', report(1, 1), { historyPerDepot: 5 });
    expect((await statusHistory(m, 'd1', 100)).map((s) => s.sequence)).toEqual([8, 7, 6, 5, 4]);
    expect(await statusHistory(m, 'd2')).toHaveLength(1);
  });

  it('stores the raw report as received and refuses unknown machines and agents', async () => {
    await recordDepotStatus(m, 'd1', report(1, 1), { raw: { ...report(1, 1), futureField: 'x' } });
    expect((await latestStatusAll(m))[0]?.report).toMatchObject({ futureField: 'x' });
    expect((await caught(async () => await recordDepotStatus(m, 'ghost', report(1, 1)))).code).toBe(
      'not-found',
    );
    expect((await caught(async () => await recordDepotStatus(m, 'pc', report(1, 1)))).code).toBe('forbidden');
    expect((await caught(async () => await recordDepotStatus(m, 'd1', report(2, -1)))).message).toMatch(
      /servedGeneration must be an integer >= 0/,
    );
  });

  it("refuses, and flags in the audit log, a generation above the master's newest (it would show as current)", async () => {
    expect(await recordDepotStatus(m, 'd1', report(1, 19))).toBe('recorded'); // target 20: the newest
    const e = await caught(async () => await recordDepotStatus(m, 'd1', report(2, 25)));
    expect(e.code).toBe('bad-input');
    expect(e.message).toBe(
      "status report from d1: servedGeneration 25 is above the master's newest generation 20",
    );
    expect((await caught(async () => await recordDepotStatus(m, 'd1', report(3, 20)))).message).toMatch(
      /targetGeneration 21 is above the master's newest generation 20/,
    );
    expect((await latestStatusAll(m))[0]).toMatchObject({ sequence: 1, servedGeneration: 19 });
    const flagged = (await listAudit(m, { action: 'status.refused' })).entries;
    expect(flagged.map((a) => [a.actor, a.target])).toEqual([
      ['machine:d1', 'd1'],
      ['machine:d1', 'd1'],
    ]);
    // The depot's next genuine report is recorded as usual.
    expect(await recordDepotStatus(m, 'd1', report(4, 20, { targetGeneration: 20 }))).toBe('recorded');
  });

  it('refuses a sequence jump beyond the bound instead of adopting it, so genuine reports keep being recorded', async () => {
    expect(await recordDepotStatus(m, 'd1', report(5, 1))).toBe('recorded');
    const e = await caught(async () => await recordDepotStatus(m, 'd1', report(Number.MAX_SAFE_INTEGER, 2)));
    expect(e.message).toMatch(
      /^status report from d1: sequence 9007199254740991 jumps .* past the last one recorded \(5\); at most 1000 now/,
    );
    expect(
      (
        await caught(
          async () => await recordDepotStatus(m, 'd1', report(5 + SEQUENCE_JUMP_LIMIT.base + 1, 2)),
        )
      ).code,
    ).toBe('bad-input');
    expect(await recordDepotStatus(m, 'd1', report(6, 2))).toBe('recorded');
    expect(await recordDepotStatus(m, 'd1', report(6 + SEQUENCE_JUMP_LIMIT.base, 3))).toBe('recorded');
    // A depot that could not report for a day may be up to a day's seconds further on.
    t.clock.advance(86_400_000);
    expect(await recordDepotStatus(m, 'd1', report(1006 + 1000 + 86_400, 4))).toBe('recorded');
    expect((await latestStatusAll(m))[0]).toMatchObject({ sequence: 88_406, servedGeneration: 4 });
    expect((await listAudit(m, { action: 'status.refused' })).entries).toHaveLength(2);
  });

  it('accepts a depot whose counter started again (a new boot id), but not an older report of an earlier counter', async () => {
    const boot1 = 'a'.repeat(32);
    const boot2 = 'b'.repeat(32);
    const at = (iso: string) => ({ reportedAt: iso });
    const r1 = report(40, 3, { boot: boot1, ...at('2030-01-01T10:00:00.000Z') });
    expect(await recordDepotStatus(m, 'd1', r1, { raw: r1 })).toBe('recorded');
    // Same counter, lower sequence: a replay.
    const replay = report(39, 2, { boot: boot1, ...at('2030-01-01T11:00:00.000Z') });
    expect(await recordDepotStatus(m, 'd1', replay, { raw: replay })).toBe('stale');
    // Rebuilt database: a new counter from 1.
    const fresh = report(1, 4, { boot: boot2, ...at('2030-01-01T12:00:00.000Z') });
    expect(await recordDepotStatus(m, 'd1', fresh, { raw: fresh })).toBe('recorded');
    const next = report(2, 5, { boot: boot2, ...at('2030-01-01T12:05:00.000Z') });
    expect(await recordDepotStatus(m, 'd1', next, { raw: next })).toBe('recorded');
    // The old counter's report, replayed later: older than the last one recorded.
    const old = report(41, 3, { boot: boot1, ...at('2030-01-01T10:30:00.000Z') });
    expect(await recordDepotStatus(m, 'd1', old, { raw: old })).toBe('stale');
    expect((await latestStatusAll(m))[0]).toMatchObject({ sequence: 2, servedGeneration: 5 });
  });
});
