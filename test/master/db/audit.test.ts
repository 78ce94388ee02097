import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listAudit, recordAudit } from '../../../master/db/audit.js';
import type { MasterDb } from '../../../master/db/database.js';
import { caught, testMaster, type TestMaster } from './helpers.js';

let t: TestMaster;
let m: MasterDb;
beforeEach(async () => {
  t = await testMaster();
  m = t.m;
});
afterEach(() => t.cleanup());

describe('audit log', () => {
  it('records who did what, and pages newest first', async () => {
    const first = await recordAudit(m, {
      actor: 'alice',
      action: 'publish',
      target: 'app@1',
      detail: { generation: 1, bytes: 10 },
      address: '127.0.0.1',
    });
    expect(first).toEqual({
      id: 1,
      at: '2030-01-01T00:00:00.000Z',
      actor: 'alice',
      action: 'publish',
      target: 'app@1',
      detail: { generation: 1, bytes: 10 },
      address: '127.0.0.1',
    });
    for (let i = 2; i <= 7; i++) {
      t.clock.advance(1000);
      await recordAudit(m, { actor: i % 2 ? 'alice' : 'bob', action: 'machine.approve', target: `d${i}` });
    }
    const page1 = await listAudit(m, { limit: 3 });
    expect(page1.entries.map((e) => e.id)).toEqual([7, 6, 5]);
    const page2 = await listAudit(m, { limit: 3, before: page1.nextBefore! });
    expect(page2.entries.map((e) => e.id)).toEqual([4, 3, 2]);
    const page3 = await listAudit(m, { limit: 3, before: page2.nextBefore! });
    expect(page3).toEqual({ entries: [first] });
    expect((await listAudit(m, { actor: 'bob' })).entries.map((e) => e.target)).toEqual(['d6', 'd4', 'd2']);
    expect((await listAudit(m, { action: 'publish' })).entries).toHaveLength(1);
    expect((await listAudit(m, { target: 'd3' })).entries[0]?.detail).toEqual({});
  });

  it('refuses oversized detail and control characters', async () => {
    expect(
      (
        await caught(
          async () => await recordAudit(m, { actor: 'a', action: 'x', detail: { big: 'x'.repeat(20_000) } }),
        )
      ).code,
    ).toBe('too-large');
    expect(
      (await caught(async () => await recordAudit(m, { actor: 'a\nforged line', action: 'x' }))).code,
    ).toBe('bad-input');
  });
});
