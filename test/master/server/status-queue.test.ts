import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DepotsyncError } from '../../../src/errors.js';
import { requestEnrollment } from '../../../master/db/machines.js';
import { latestStatusAll, statusHistory, type DepotStatusInput } from '../../../master/db/status.js';
import { StatusCommitQueue } from '../../../master/server/status.js';
import { testMaster, type TestMaster } from '../db/helpers.js';

let t: TestMaster;
beforeEach(async () => {
  t = await testMaster();
  const csrPem = '-----BEGIN CERTIFICATE REQUEST-----\nMII\n-----END CERTIFICATE REQUEST-----\n';
  for (const name of ['d1', 'd2', 'd3']) await requestEnrollment(t.m, { name, role: 'depot', csrPem });
  await requestEnrollment(t.m, { name: 'pc', role: 'agent', csrPem });
  // The master has signed generations 1 to 20: reports are checked against them.
  for (let i = 1; i <= 20; i++) {
    await t.m.sql.run(
      "INSERT INTO generations (generation, created_at, created_by) VALUES (?, '2030-01-01T00:00:00.000Z', 'test')",
      [i],
    );
  }
});
afterEach(() => t.cleanup());

const report = (sequence: number, extra: Partial<DepotStatusInput> = {}): DepotStatusInput => ({
  servedGeneration: 1,
  targetGeneration: 1,
  bytesFetched: 0,
  chunksFetched: 0,
  reportedAt: '2030-01-01T00:00:00.000Z',
  sequence,
  ...extra,
});
const stored = async () => (await latestStatusAll(t.m)).length;
const tick = () => new Promise<void>((r) => setImmediate(r));

describe('status reports: group commit', () => {
  it('commits a lone report at once, and answers only after its commit', async () => {
    const q = new StatusCommitQueue(t.m);
    const p = q.submit('d1', report(1, { upstream: 'master' }));
    expect(await stored()).toBe(0);
    await expect(p).resolves.toBe('recorded');
    expect((await latestStatusAll(t.m))[0]).toMatchObject({ machine: 'd1', upstream: 'master' });
  });

  it('reports within the window wait and share one transaction; maxBatch commits without waiting', async () => {
    let now = 0;
    const q = new StatusCommitQueue(t.m, { batchMs: 10_000, maxBatch: 2, clockMs: () => now });
    await q.submit('d1', report(1));
    now = 10; // inside the window of the first commit: the next report waits
    const second = q.submit('d2', report(1));
    await tick();
    await tick();
    expect(await stored()).toBe(1);
    const third = q.submit('d3', report(1)); // the batch is full: both go now, together
    await expect(Promise.all([second, third])).resolves.toEqual(['recorded', 'recorded']);
    const rows = await latestStatusAll(t.m);
    expect(rows.map((r) => r.machine)).toEqual(['d1', 'd2', 'd3']);
    expect(rows[1]!.receivedAt).toBe(rows[2]!.receivedAt);
  });

  it('a bad or stale report in a batch gets its own answer and does not undo the others', async () => {
    const q = new StatusCommitQueue(t.m, { batchMs: 0, maxBatch: 100 });
    await q.submit('d1', report(5));
    const out = await Promise.allSettled([
      q.submit('d1', report(5)),
      q.submit('pc', report(1)),
      q.submit('ghost', report(1)),
      q.submit('d2', report(1)),
      q.submit('d3', report(1), { raw: { junk: 'x'.repeat(70_000) } }),
    ]);
    expect(out[0]).toEqual({ status: 'fulfilled', value: 'stale' });
    for (const [i, msg] of [
      [1, /pc is not a depot/],
      [2, /ghost is not known/],
      [4, /larger than 64 KiB/],
    ] as const) {
      const r = out[i]!;
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(DepotsyncError);
      expect(((r as PromiseRejectedResult).reason as Error).message).toMatch(msg);
    }
    expect(out[3]).toEqual({ status: 'fulfilled', value: 'recorded' });
    expect(await statusHistory(t.m, 'd1')).toHaveLength(1);
    expect(await statusHistory(t.m, 'd3')).toHaveLength(0);
  });

  it('refuses bad options by name', () => {
    expect(() => new StatusCommitQueue(t.m, { batchMs: -1 })).toThrow(
      /batchMs must be an integer from 0 to 10000/,
    );
    expect(() => new StatusCommitQueue(t.m, { maxBatch: 0 })).toThrow(/maxBatch must be an integer >= 1/);
  });
});
