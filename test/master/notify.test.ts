import { transaction } from '../../master/db/database.js';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../src/errors.js';
import { createMachineKeyAndCsr } from '../../src/pki/csr.js';
import { listAudit } from '../../master/db/audit.js';
import { approve, requestEnrollment } from '../../master/db/machines.js';
import { lastNotifySeq, notifyRequestsAfter, NOTIFY_KEEP_ROWS } from '../../master/db/notify-requests.js';
import { requestSyncNow } from '../../master/notify.js';
import { runCli } from '../helpers/cli.js';
import { testBackend } from '../helpers/master-db.js';
import { tempDir } from '../helpers/tmp.js';
import { testMaster, type TestMaster } from './db/helpers.js';

let t: TestMaster;
afterEach(() => t?.cleanup());

async function machine(name: string, role: 'depot' | 'agent', approved: boolean): Promise<void> {
  const { csrPem } = createMachineKeyAndCsr({ machineName: name, role });
  await requestEnrollment(t.m, { name, role, csrPem });
  if (approved) await approve(t.m, name, { by: 'test' });
}

const fails = async (fn: () => unknown) => {
  try {
    await fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a failure');
};

describe('master notify: sync-now requests through the database', () => {
  it('records a request for every depot or for one, in order, each with its audit record', async () => {
    t = await testMaster();
    await machine('depot-a', 'depot', true);
    expect(await lastNotifySeq(t.m)).toBe(0);
    const all = await requestSyncNow(t.m, { actor: 'cli' });
    const one = await requestSyncNow(t.m, { actor: 'alice', depot: 'depot-a' });
    expect(all).toMatchObject({
      seq: 1,
      depot: null,
      requestedBy: 'cli',
      requestedAt: '2030-01-01T00:00:00.000Z',
    });
    expect(one).toMatchObject({ seq: 2, depot: 'depot-a' });
    expect((await notifyRequestsAfter(t.m, 0)).map((r) => r.seq)).toEqual([1, 2]);
    expect((await notifyRequestsAfter(t.m, 1)).map((r) => r.depot)).toEqual(['depot-a']);
    const audit = (await listAudit(t.m, { action: 'depot.notify' })).entries.filter(
      (e) => e.action === 'depot.notify',
    );
    expect(audit.map((e) => [e.actor, e.target, e.detail])).toEqual(
      expect.arrayContaining([
        ['cli', '*', { seq: 1 }],
        ['alice', 'depot-a', { seq: 2 }],
      ]),
    );
  });

  it('refuses an unknown machine, an agent, a depot that is not approved and a bad name, recording nothing', async () => {
    t = await testMaster();
    await machine('agent-1', 'agent', true);
    await machine('depot-p', 'depot', false);
    const unknown = await fails(async () => await requestSyncNow(t.m, { actor: 'cli', depot: 'depot-x' }));
    expect(isDepotsyncError(unknown, 'not-found')).toBe(true);
    expect(unknown.message).toMatch(/no machine named depot-x/);
    expect(
      (await fails(async () => await requestSyncNow(t.m, { actor: 'cli', depot: 'agent-1' }))).message,
    ).toMatch(/agent-1 is an agent, not a depot/);
    expect(
      (await fails(async () => await requestSyncNow(t.m, { actor: 'cli', depot: 'depot-p' }))).message,
    ).toMatch(/depot depot-p is pending, so it cannot sync/);
    expect(
      (await fails(async () => await requestSyncNow(t.m, { actor: 'cli', depot: '../etc' }))).message,
    ).toMatch(/is not a machine name/);
    expect(await lastNotifySeq(t.m)).toBe(0);
    expect(
      (await listAudit(t.m, { action: 'depot.notify' })).entries.filter((e) => e.action === 'depot.notify'),
    ).toEqual([]);
  });

  it(`keeps the newest ${NOTIFY_KEEP_ROWS} requests and never reuses a sequence number`, async () => {
    t = await testMaster();
    await transaction(t.m, async () => {
      for (let i = 0; i < NOTIFY_KEEP_ROWS + 10; i++)
        await t.m.sql.run(
          "INSERT INTO notify_requests (depot, requested_at, requested_by) VALUES (NULL, 'x', 'y')",
        );
    });
    const r = await requestSyncNow(t.m, { actor: 'cli' });
    expect(r.seq).toBe(NOTIFY_KEEP_ROWS + 11);
    expect(
      (await t.m.sql.get('SELECT count(*) AS n, min(seq) AS lo FROM notify_requests')) as {
        n: number;
        lo: number;
      },
    ).toEqual({ n: NOTIFY_KEEP_ROWS, lo: 12 });
    expect((await requestSyncNow(t.m, { actor: 'cli' })).seq).toBe(NOTIFY_KEEP_ROWS + 12);
  });
});

// The CLI opens the master folder's own SQLite catalog: the postgres project has nothing more to check here.
describe.skipIf(testBackend() === 'postgres')('depotsync master notify (CLI)', () => {
  const tmp = tempDir();
  const M = join(tmp.dir, 'M');
  afterAll(() => tmp.cleanup());

  it(
    'prints one JSON object; a bad --depot is a usage error (exit 2), an unknown depot a failure (exit 1) with one line',
    { timeout: 60_000 },
    () => {
      expect(runCli(['master', 'init', '--dir', M, '--json']).status).toBe(0);
      const r = runCli(['master', 'notify', '--dir', M, '--json']);
      expect(r.status).toBe(0);
      expect(r.json).toMatchObject({ seq: 1, depot: null });
      expect(typeof r.json.requestedAt).toBe('string');

      const bad = runCli(['master', 'notify', '--dir', M, '--depot', 'no good']);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/--depot must be a depot's machine name/);
      const unknown = runCli(['master', 'notify', '--dir', M, '--depot', 'depot-z']);
      expect(unknown.status).toBe(1);
      expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
      expect(unknown.stderr).toMatch(/no machine named depot-z/);
    },
  );
});
