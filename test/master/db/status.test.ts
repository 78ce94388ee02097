import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MasterDb } from '../../../master/db/database.js';
import { requestEnrollment } from '../../../master/db/machines.js';
import { latestStatusAll, recordDepotStatus, statusHistory, type DepotStatusInput } from '../../../master/db/status.js';
import { caught, testMaster, type TestMaster } from './helpers.js';

let t: TestMaster;
let m: MasterDb;
beforeEach(() => {
  t = testMaster();
  m = t.m;
  const csrPem = '-----BEGIN CERTIFICATE REQUEST-----\nMII\n-----END CERTIFICATE REQUEST-----\n';
  for (const name of ['d1', 'd2']) requestEnrollment(m, { name, role: 'depot', csrPem });
  requestEnrollment(m, { name: 'pc', role: 'agent', csrPem });
});
afterEach(() => t.cleanup());

const report = (sequence: number, served: number, extra: Partial<DepotStatusInput> = {}): DepotStatusInput => ({
  servedGeneration: served,
  targetGeneration: served + 1,
  bytesFetched: 1000 * sequence,
  chunksFetched: sequence,
  reportedAt: '2030-01-01T00:00:00.000Z',
  sequence,
  ...extra,
});

describe('depot status', () => {
  it('keeps the latest report per depot and ignores replays', () => {
    expect(recordDepotStatus(m, 'd1', report(1, 3), { address: '10.0.0.1' })).toBe('recorded');
    t.clock.advance(1000);
    expect(recordDepotStatus(m, 'd1', report(2, 4, { lastError: 'network: timeout', scrubFailed: 1 }))).toBe('recorded');
    expect(recordDepotStatus(m, 'd2', report(1, 4, { lastSuccess: '2030-01-01T00:00:00.000Z' }))).toBe('recorded');
    // An old report replayed later does not overwrite newer status.
    expect(recordDepotStatus(m, 'd1', report(2, 1))).toBe('stale');
    expect(recordDepotStatus(m, 'd1', report(1, 1))).toBe('stale');
    const latest = latestStatusAll(m);
    expect(latest.map((s) => [s.machine, s.sequence, s.servedGeneration])).toEqual([
      ['d1', 2, 4],
      ['d2', 1, 4],
    ]);
    expect(latest[0]).toMatchObject({ lastError: 'network: timeout', scrubFailed: 1, bytesRemaining: 0, receivedAt: '2030-01-01T00:00:01.000Z' });
    expect(latest[0]?.address).toBeUndefined();
    expect(latest[1]?.lastSuccess).toBe('2030-01-01T00:00:00.000Z');
    expect(latest[0]?.report).toMatchObject({ sequence: 2, servedGeneration: 4 });
  });

  it('keeps a bounded history per depot', () => {
    for (let s = 1; s <= 8; s++) recordDepotStatus(m, 'd1', report(s, s), { historyPerDepot: 5 });
    recordDepotStatus(m, 'd2', report(1, 1), { historyPerDepot: 5 });
    expect(statusHistory(m, 'd1', 100).map((s) => s.sequence)).toEqual([8, 7, 6, 5, 4]);
    expect(statusHistory(m, 'd2')).toHaveLength(1);
  });

  it('stores the raw report as received and refuses unknown machines and agents', () => {
    recordDepotStatus(m, 'd1', report(1, 1), { raw: { ...report(1, 1), futureField: 'x' } });
    expect(latestStatusAll(m)[0]?.report).toMatchObject({ futureField: 'x' });
    expect(caught(() => recordDepotStatus(m, 'ghost', report(1, 1))).code).toBe('not-found');
    expect(caught(() => recordDepotStatus(m, 'pc', report(1, 1))).code).toBe('forbidden');
    expect(caught(() => recordDepotStatus(m, 'd1', report(2, -1))).message).toMatch(/servedGeneration must be an integer >= 0/);
  });
});
