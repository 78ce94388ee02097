import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireMasterLock } from '../../../master/backup/lock.js';
import { DEFAULT_MASTER_CONFIG, loadMasterConfig } from '../../../master/config.js';
import { runCli } from '../../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';

describe('depotsync master gc', () => {
  const tmp = tempDir();
  const M = join(tmp.dir, 'M');
  const file = join(tmp.dir, 'app.bin');
  beforeAll(() => {
    writeFileSync(file, pseudoRandomBytes(500_000, 9));
    expect(runCli(['master', 'init', '--dir', M, '--json']).status).toBe(0);
    expect(
      runCli(['master', 'publish', '--dir', M, '--name', 'app', '--version', '1', file, '--json']).status,
    ).toBe(0);
  });
  afterAll(() => tmp.cleanup());

  it('--json prints {gc,retention}; within the grace period nothing is removed', () => {
    expect(runCli(['master', 'unpublish', '--dir', M, 'app@1', '--json']).status).toBe(0);
    const r = runCli(['master', 'gc', '--dir', M, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({
      gc: { removed: 0, liveChunks: expect.any(Number) },
      retention: { statusPruned: 0, auditPruned: 0 },
    });
    expect(r.json.gc.liveChunks).toBeGreaterThan(0); // the version removed moments ago is retained
    expect(existsSync(join(M, 'master.lock'))).toBe(false);
    const human = runCli(['master', 'gc', '--dir', M]);
    expect(human.stdout).toMatch(/^gc: 0 chunk\(s\) removed/);
  });

  it('is refused while the master serves (it collects on its own schedule)', () => {
    const lock = acquireMasterLock(M, 'serve');
    try {
      const r = runCli(['master', 'gc', '--dir', M, '--json']);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/master gc: master directory .* is in use: serve by process/);
    } finally {
      lock.release();
    }
  });

  it('names a folder that is no master, without leaving a lock file in it', () => {
    const other = join(tmp.dir, 'other');
    mkdirSync(other);
    const r = runCli(['master', 'gc', '--dir', other]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/is not a depotsync master directory/);
    expect(existsSync(join(other, 'master.lock'))).toBe(false);
  });
});

describe('master.json: maintenance settings', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());
  const load = (settings: Record<string, unknown>) => () => {
    const path = join(tmp.dir, 'master.json');
    writeFileSync(path, JSON.stringify({ ...DEFAULT_MASTER_CONFIG, ...settings }));
    return loadMasterConfig(path);
  };

  it('default to daily GC, 6 h grace, 31 days of status and 365 days of audit, also for older files', () => {
    const path = join(tmp.dir, 'older.json');
    const {
      gcIntervalHours: _a,
      gcGraceHours: _b,
      statusRetentionDays: _c,
      auditRetentionDays: _d,
      ...older
    } = DEFAULT_MASTER_CONFIG;
    writeFileSync(path, JSON.stringify(older));
    expect(loadMasterConfig(path)).toMatchObject({
      gcIntervalHours: 24,
      gcGraceHours: 6,
      statusRetentionDays: 31,
      auditRetentionDays: 365,
    });
    expect(JSON.parse(readFileSync(path, 'utf8'))).not.toHaveProperty('gcIntervalHours');
    expect(load({ gcIntervalHours: 0 })().gcIntervalHours).toBe(0);
  });

  it('refuse bad values by name', () => {
    expect(load({ gcIntervalHours: -1 })).toThrow(/master\.json: gcIntervalHours must be an integer from 0/);
    expect(load({ gcGraceHours: 0 })).toThrow(/master\.json: gcGraceHours must be an integer from 1/);
    expect(load({ statusRetentionDays: 0 })).toThrow(
      /master\.json: statusRetentionDays must be an integer from 1/,
    );
    expect(load({ statusRetentionDays: 0.5 })).toThrow(/non-integer number/);
    expect(load({ auditRetentionDays: '365' })).toThrow(/master\.json: auditRetentionDays must be a number/);
    expect(load({ auditRetentionDays: 0 })).toThrow(
      /master\.json: auditRetentionDays must be an integer from 1/,
    );
    expect(load({ gcIntervalHour: 24 })).toThrow(/gcIntervalHour/);
  });
});
