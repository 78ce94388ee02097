import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { decodeDepotConfig, newDepotConfig } from '../../depot/config.js';
import { DepotDb } from '../../depot/db/depot-db.js';
import { SyncLock } from '../../depot/db/sync-lock.js';
import { DbTrustedStore } from '../../depot/db/trusted-store.js';
import { buildStatusReport } from '../../depot/sync/status-report.js';
import { decodeStatusReport } from '../../src/wire/status.js';

describe('depot database', () => {
  const dirs: string[] = [];
  const open = () => {
    const dir = mkdtempSync(join(tmpdir(), 'depot-db-'));
    dirs.push(dir);
    return DepotDb.open(join(dir, 'depot.db'), silentLogger());
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('gives its status counter a boot id, made with it and kept with it; reports carry it', () => {
    const a = open();
    expect(a.statusBoot()).toBeUndefined();
    expect(a.nextSequence()).toBe(1);
    const boot = a.statusBoot();
    expect(boot).toMatch(/^[0-9a-f]{32}$/);
    expect(a.nextSequence()).toBe(2);
    expect(a.statusBoot()).toBe(boot);
    const report = buildStatusReport(a, {
      chunksFetched: 0,
      bytesFetched: 0,
      freeDiskBytes: 0,
      now: new Date(),
    });
    expect(decodeStatusReport(JSON.parse(JSON.stringify(report)))).toMatchObject({ sequence: 3, boot });
    // Another database (rebuilt depot): another counter, another id.
    const b = open();
    b.nextSequence();
    expect(b.statusBoot()).not.toBe(boot);
    expect(() => decodeStatusReport({ ...report, boot: 'not hex' })).toThrow(/boot/);
    a.close();
    b.close();
  });

  it('never replaces a kept revocation list with an older one (a sync and an event-driven refresh may race)', () => {
    const db = open();
    db.saveRevocations(3, Buffer.from('v3'), new Date());
    db.saveRevocations(2, Buffer.from('v2'), new Date());
    expect(db.revocations()?.bytes.toString()).toBe('v3');
    expect(db.revocationsVersion()).toBe(3);
    db.saveRevocations(4, Buffer.from('v4'), new Date());
    expect(db.revocationsVersion()).toBe(4);
    db.close();
  });

  it('sets synchronous=FULL and WAL on open, and migrates to the current schema', () => {
    const db = open();
    expect(db.db.pragma('synchronous', { simple: true })).toBe(2);
    expect(db.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.db.pragma('user_version', { simple: true })).toBe(1);
    db.close();
  });

  it('switches the served generation only when every pending target is complete, in one transaction', () => {
    const db = open();
    const now = new Date();
    db.putTarget(
      {
        name: 'a'.repeat(64) + '.p@1.json',
        path: 'p@1.json',
        length: 3,
        sha256: 'a'.repeat(64),
        manifestId: 'b'.repeat(64),
        totalBytes: 1,
        chunkCount: 1,
        bytes: Buffer.from('abc'),
      },
      now,
    );
    db.setPending(7, [{ path: 'p@1.json', name: 'a'.repeat(64) + '.p@1.json' }], now);
    const e = (() => {
      try {
        db.switchServed(7, Buffer.from('{}'), 7, now);
      } catch (x) {
        return x;
      }
    })();
    expect(isDepotsyncError(e, 'internal')).toBe(true);
    expect(db.served()).toBeUndefined();
    db.markComplete(['a'.repeat(64) + '.p@1.json']);
    db.switchServed(7, Buffer.from('{"ts":1}'), 7, now);
    expect(db.served()).toMatchObject({ generation: 7, timestampVersion: 7 });
    expect(db.pending()).toBeUndefined();
    expect(db.slotTargets('served').map((t) => t.path)).toEqual(['p@1.json']);
    db.close();
  });

  it('keeps bins in memory until flush, and top-level roles at once; files are re-servable by name', async () => {
    const db = open();
    const store = new DbTrustedStore(db);
    await store.save('snapshot', Buffer.from('snap'), 4);
    await store.save('bin-0a', Buffer.from('bin'), 2);
    expect(db.trustedLoad('bin-0a')).toBeUndefined();
    expect(Buffer.from((await store.load('bin-0a'))!).toString()).toBe('bin');
    store.flush();
    expect(db.trustedLoad('bin-0a')!.toString()).toBe('bin');
    expect(db.metadataFile('4.snapshot.json')!.toString()).toBe('snap');
    expect(db.metadataFile('2.bin-0a.json')!.toString()).toBe('bin');
    await expect(store.save('../x', Buffer.from(''), 1)).rejects.toThrow(/not a plain role name/);
    db.close();
  });
});

describe('sync lock (single flight across processes)', () => {
  it('refuses a second holder while the first lives, and takes over from a dead one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'depot-lock-'));
    const db = DepotDb.open(join(dir, 'depot.db'), silentLogger());
    try {
      const a = new SyncLock(db, { pid: 1111, host: 'h', isAlive: () => true });
      const b = new SyncLock(db, { pid: 2222, host: 'h', isAlive: () => true });
      a.acquire();
      expect(() => b.acquire()).toThrow(/another sync is running on this depot \(pid 1111 on h/);
      const c = new SyncLock(db, { pid: 3333, host: 'h', isAlive: (pid) => pid !== 1111 }); // 1111 was killed
      c.acquire();
      expect(c.held).toBe(true);
      a.release(); // a stale holder cannot release someone else's lock
      expect(() => b.acquire()).toThrow(/pid 3333/);
      c.release();
      b.acquire();
      b.release();
    } finally {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('depot.json', () => {
  const base = { name: 'd1', masterUrl: 'https://m:8443', fingerprint: 'a'.repeat(64) };
  it('fills defaults and validates, naming the option, the expectation and the value', () => {
    expect(newDepotConfig(base).sync.batchMaxBytes).toBe(8 * 1024 * 1024);
    expect(() => newDepotConfig({ ...base, schedule: { intervalMs: 10 } })).toThrow(
      /schedule.intervalMs must be an integer from 1000 to .*, got 10/,
    );
    expect(() => newDepotConfig({ ...base, schedule: { window: '25:00-01:00' } })).toThrow(
      /schedule.window: expected "HH:MM-HH:MM"/,
    );
    expect(() => newDepotConfig({ ...base, schedule: { bandwidthBytesPerSecond: 100 } })).toThrow(
      /at least 16384/,
    );
    expect(() => decodeDepotConfig({ ...base, surprise: 1 })).toThrow(/unknown setting "surprise"/);
    expect(() => decodeDepotConfig({ ...base, sync: { concurency: 2 } })).toThrow(
      /unknown setting "concurency"/,
    );
    expect(() => decodeDepotConfig({ ...base, fingerprint: 'xyz' })).toThrow(
      /fingerprint must be a string matching/,
    );
  });

  it('has distribute-now on by default, and validates its notify settings', () => {
    expect(newDepotConfig(base).notify).toEqual({
      enabled: true,
      reconnectBaseMs: 1000,
      reconnectMaxMs: 60_000,
      minGapMs: 2000,
      idleTimeoutMs: 60_000,
    });
    expect(decodeDepotConfig({ ...base, notify: { enabled: false } }).notify.enabled).toBe(false);
    expect(() => decodeDepotConfig({ ...base, notify: { enabled: 'yes' } })).toThrow(
      /notify: enabled must be a boolean, got "yes"/,
    );
    expect(() => decodeDepotConfig({ ...base, notify: { reconectBaseMs: 5 } })).toThrow(
      /unknown setting "reconectBaseMs"/,
    );
    expect(() =>
      newDepotConfig({ ...base, notify: { reconnectBaseMs: 5000, reconnectMaxMs: 1000 } }),
    ).toThrow(/notify.reconnectMaxMs must be an integer from 5000/);
    expect(() => newDepotConfig({ ...base, notify: { idleTimeoutMs: 100 } })).toThrow(
      /notify.idleTimeoutMs must be an integer from 5000/,
    );
  });
});
