import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MASTER_DISK_SUBJECT } from '../../../master/admin/alerts.js';
import { listAudit, recordAudit } from '../../../master/db/audit.js';
import { pruneHistory } from '../../../master/maintenance/retention.js';
import { adminFixture, insertDepot, report, type AdminFixture } from '../admin/helpers.js';

const DAY = 86_400_000;

describe('retention of status reports and the audit log', () => {
  let f: AdminFixture;
  beforeAll(async () => {
    f = await adminFixture({ start: Date.parse('2026-01-01T00:00:00Z') });
  });
  afterAll(async () => {
    await f?.close();
  });
  const statusRows = async (machine: string) =>
    (
      await f.ctx.db.sql.all<{ received_at: string }>(
        'SELECT received_at FROM depot_status WHERE machine = ? ORDER BY id',
        [machine],
      )
    ).map((r) => r.received_at);

  it('deletes only rows older than the retention, and keeps each depot latest report however old', async () => {
    await insertDepot(f.ctx, 'busy');
    await insertDepot(f.ctx, 'quiet');
    await report(f.ctx, 'quiet', { servedGeneration: 1 }); // day 0, then never again
    for (let day = 0; day < 40; day++) {
      await report(f.ctx, 'busy', { servedGeneration: 1 });
      await recordAudit(f.ctx.db, { actor: 'test', action: 'test.tick', target: `day${day}` });
      f.clock.advance(DAY);
    }
    // Now day 40: retention 31 days keeps reports received on day 9 or later.
    const r = await pruneHistory(f.ctx.db, { statusRetentionDays: 31, auditRetentionDays: 10 });
    expect(r.statusPruned).toBe(9);
    expect(await statusRows('busy')).toHaveLength(31);
    expect((await statusRows('busy'))[0]).toBe(
      new Date(Date.parse('2026-01-01T00:00:00Z') + 9 * DAY).toISOString(),
    );
    expect(await statusRows('quiet')).toHaveLength(1);
    // Audit: day 30 on stay (10 days), plus the record of this prune.
    const ticks = (await listAudit(f.ctx.db, { action: 'test.tick', limit: 1000 })).entries.map(
      (e) => e.target,
    );
    expect(ticks).toHaveLength(10);
    expect(ticks[ticks.length - 1]).toBe('day30');
    expect((await listAudit(f.ctx.db, { action: 'history.prune' })).entries[0]).toMatchObject({
      actor: 'system',
      detail: { statusPruned: 9, auditPruned: r.auditPruned },
    });
    // Operators, machines and everything else survive; a second run right away prunes nothing.
    expect(await pruneHistory(f.ctx.db, { statusRetentionDays: 31, auditRetentionDays: 10 })).toEqual({
      statusPruned: 0,
      auditPruned: 0,
    });
  });

  it('refuses retentions that are not whole days >= 1', async () => {
    await expect(pruneHistory(f.ctx.db, { statusRetentionDays: 0, auditRetentionDays: 10 })).rejects.toThrow(
      /statusRetentionDays must be an integer >= 1/,
    );
    await expect(pruneHistory(f.ctx.db, { statusRetentionDays: 1, auditRetentionDays: 1.5 })).rejects.toThrow(
      /auditRetentionDays must be an integer >= 1/,
    );
  });
});

describe('the master low-disk alert', () => {
  let f: AdminFixture;
  let free: number | null = 5e10;
  beforeAll(async () => {
    f = await adminFixture({ settings: { alerts: { lowDiskBytes: 1e9 } }, freeDiskBytes: () => free });
  });
  afterAll(async () => {
    await f?.close();
  });
  const master = async () =>
    (await f.admin.status({ packages: false })).alerts.filter((a) => a.subject === MASTER_DISK_SUBJECT);

  it('warns under the threshold, errors under a quarter of it, clears when space is back', async () => {
    expect(await master()).toEqual([]);
    free = 5e8;
    expect(await master()).toMatchObject([
      {
        key: `low-disk:${MASTER_DISK_SUBJECT}`,
        level: 'warning',
        message: expect.stringMatching(/free disk/),
      },
    ]);
    free = 1e8;
    expect(await master()).toMatchObject([{ level: 'error' }]);
    expect((await f.admin.status({ packages: false })).summary.alerts.error).toBeGreaterThanOrEqual(1);
    free = null; // unreadable: no alert rather than a false one
    expect(await master()).toEqual([]);
    free = 5e10;
    expect(await master()).toEqual([]);
  });

  it('is off with lowDiskBytes 0', async () => {
    const g = await adminFixture({ settings: { alerts: { lowDiskBytes: 0 } }, freeDiskBytes: () => 1 });
    try {
      expect(
        (await g.admin.status({ packages: false })).alerts.filter((a) => a.subject === MASTER_DISK_SUBJECT),
      ).toEqual([]);
    } finally {
      await g.close();
    }
  });
});
