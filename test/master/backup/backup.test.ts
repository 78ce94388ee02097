import { createHash, X509Certificate } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { issueMachineCertificate } from '../../../src/pki/ca.js';
import { certificateInfo } from '../../../src/pki/cert-info.js';
import { createMachineKeyAndCsr } from '../../../src/pki/csr.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { initMaster } from '../../../master/init.js';
import { listAudit } from '../../../master/db/audit.js';
import { byName } from '../../../master/db/machines.js';
import { currentGeneration, latestMetadata } from '../../../master/db/catalog.js';
import { listBackups } from '../../../master/backup/backup.js';
import { backupOpenMaster } from '../../../master/backup/run.js';
import { acquireMasterLock } from '../../../master/backup/lock.js';
import { restoreMaster } from '../../../master/backup/restore.js';
import { certificateAdopter } from '../../../master/backup/adopt.js';
import { readRestoreRecord } from '../../../master/backup/epoch.js';
import { loadRepository } from '../../../master/repository.js';
import { liveChunkIds } from '../../../master/db/live-chunks.js';
import { masterAuthorize } from '../../../master/server/authorize.js';
import { publish } from '../../../master/publish/publish.js';
import { adminFixture, insertDepot, type AdminFixture } from '../admin/helpers.js';
import { isDepotsyncError, type ErrorCode } from '../../../src/errors.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';

const HOUR = 3_600_000;
const log = silentLogger();
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
/** Cheaper scrypt for tests (the format records the parameters; restore reads them from the header). */
const scrypt = { N: 2 ** 12, r: 8, p: 1 };
const PASS = 'correct horse battery staple';
const withPass = <T>(pass: string | undefined, fn: () => Promise<T>): Promise<T> => {
  const before = process.env.DEPOTSYNC_BACKUP_PASSPHRASE;
  if (pass === undefined) delete process.env.DEPOTSYNC_BACKUP_PASSPHRASE;
  else process.env.DEPOTSYNC_BACKUP_PASSPHRASE = pass;
  return fn().finally(() => {
    if (before === undefined) delete process.env.DEPOTSYNC_BACKUP_PASSPHRASE;
    else process.env.DEPOTSYNC_BACKUP_PASSPHRASE = before;
  });
};

describe('master backup: encrypted, complete, retained, alert on failure', () => {
  let f: AdminFixture;
  beforeAll(async () => {
    f = await adminFixture({ start: Date.parse('2026-05-01T00:00:00Z') });
  });
  afterAll(async () => {
    await f?.close();
  });
  const backup = (actor = 'schedule', pass: string | null = PASS) =>
    withPass(
      pass ?? undefined,
      async () => await backupOpenMaster(f.ctx, { actor, now: () => new Date(f.clock.t), scrypt }),
    );

  it('writes one 0600 file with a readable header and no readable secrets, and keeps only the newest N', async () => {
    f.ctx.config.backupRetainCount = 3;
    await insertDepot(f.ctx, 'depot-a');
    const first = await backup('cli');
    expect(first.file).toBe(join(f.ctx.layout.backups, 'master-20260501T000000000Z.dsbackup'));
    expect(statSync(first.file).mode & 0o777).toBe(0o600);
    const bytes = readFileSync(first.file);
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('DSBACKUP');
    const head = bytes.subarray(0, 2000).toString('latin1');
    expect(head).toContain('"name":"scrypt"');
    expect(head).toContain('"masterName":"master"');
    // The CA key, the TOTP key and a database page never appear in the clear.
    for (const secret of [
      readFileSync(f.ctx.layout.caKey),
      readFileSync(join(f.ctx.layout.keysDir, 'totp.key')),
      Buffer.from('SQLite format 3'),
    ])
      expect(bytes.includes(secret)).toBe(false);
    expect(readdirSync(f.ctx.layout.backups).filter((n) => n.startsWith('.'))).toEqual([]);
    for (let i = 0; i < 8; i++) {
      f.clock.advance(HOUR);
      await backup();
    }
    expect(listBackups(f.ctx.layout.backups)).toEqual([
      'master-20260501T060000000Z.dsbackup',
      'master-20260501T070000000Z.dsbackup',
      'master-20260501T080000000Z.dsbackup',
    ]);
    const audit = (await listAudit(f.ctx.db, { limit: 20 })).entries.filter(
      (e) => e.action === 'database.backup',
    );
    expect(audit[0]).toMatchObject({ actor: 'schedule', detail: { removed: 1 } });
  });

  it('a failed backup (no passphrase, a short one, no folder) raises an alert that clears on the next success', async () => {
    const alerts = async () =>
      (await f.admin.status({ packages: false })).alerts
        .filter((a) => a.kind === 'backup')
        .map((a) => a.message);
    expect(await alerts()).toEqual([]);
    f.clock.advance(HOUR);
    await expectDepotsyncError(backup('schedule', null), 'usage', /no backup passphrase/);
    expect(await alerts()).toEqual([
      expect.stringMatching(/master backup failed at .*: no backup passphrase/),
    ]);
    f.clock.advance(HOUR);
    await expectDepotsyncError(backup('schedule', 'short'), 'bad-input', /5 characters; at least 12/);
    rmSync(f.ctx.layout.backups, { recursive: true });
    writeFileSync(f.ctx.layout.backups, 'not a folder');
    f.clock.advance(HOUR);
    await expect(backup()).rejects.toThrow(/backup folder .*backups/);
    expect(await alerts()).toEqual([expect.stringMatching(/backup folder/)]);
    rmSync(f.ctx.layout.backups);
    f.clock.advance(HOUR);
    await backup();
    expect(await alerts()).toEqual([]);
  });
});

describe('master restore', () => {
  const tmp = tempDir('depotsync-restore-');
  const M = join(tmp.dir, 'M');
  let good: string;
  let fingerprint: string;
  let before: { generation: number; versions: Record<string, number>; backupAt: number };
  const versions = async (ctx: MasterContext) => {
    const out: Record<string, number> = {};
    for (const r of ['root', 'targets', 'snapshot', 'timestamp'])
      out[r] = (await latestMetadata(ctx.db, r))!.version;
    return out;
  };
  beforeAll(async () => {
    fingerprint = (await initMaster(M, { log })).fingerprint;
    const ctx = await openMaster(M, log);
    try {
      await insertDepot(ctx, 'depot-old');
      writeFileSync(join(tmp.dir, 'v1.bin'), pseudoRandomBytes(2_500_000, 3));
      await publish(ctx, { name: 'tool', version: '1', path: join(tmp.dir, 'v1.bin'), actor: 'test' });
      before = {
        generation: await currentGeneration(ctx.db),
        versions: await versions(ctx),
        backupAt: Date.now(),
      };
      good = (await withPass(PASS, async () => await backupOpenMaster(ctx, { actor: 'cli', scrypt }))).file;
      await insertDepot(ctx, 'depot-new'); // after the backup
    } finally {
      await ctx.close();
    }
  });
  afterAll(() => tmp.cleanup());
  const restore = async (dir: string, file = good, pass = PASS, expect?: string) =>
    await restoreMaster(dir, file, {
      passphrase: pass,
      log,
      ...(expect ? { expectFingerprint: expect } : {}),
    });

  it('brings back every file, the store and the database into a new folder, with versions a step ahead', async () => {
    const R = join(tmp.dir, 'R1');
    const r = await restore(R, good, PASS, fingerprint);
    expect(r.fingerprint).toBe(fingerprint);
    for (const rel of [
      'master.json',
      'keys/targets.pem',
      'keys/snapshot.pem',
      'keys/timestamp.pem',
      'keys/root.pem',
      'keys/totp.key',
      'ca/ca-key.pem',
      'ca/ca-cert.pem',
      'tls/server-key.pem',
      'tls/server-cert.pem',
      '1.root.json',
    ]) {
      expect(sha(join(R, rel)), rel).toBe(sha(join(M, rel)));
      expect(statSync(join(R, rel)).mode & 0o777, rel).toBe(statSync(join(M, rel)).mode & 0o777);
    }
    expect(existsSync(join(R, 'backups'))).toBe(true);
    expect(existsSync(join(R, 'master.lock'))).toBe(false);
    const record = readRestoreRecord(R)!;
    expect(record).toMatchObject({ fromGeneration: before.generation, versionStep: 1_000_000 });
    const ctx = await openMaster(R, log);
    try {
      expect(await byName(ctx.db, 'depot-old')).toBeDefined();
      expect(await byName(ctx.db, 'depot-new')).toBeUndefined();
      expect(await currentGeneration(ctx.db)).toBe(before.generation + 1_000_000);
      expect(await versions(ctx)).toEqual({
        root: before.versions.root,
        targets: before.versions.targets! + 1_000_000,
        snapshot: before.versions.snapshot! + 1_000_000,
        timestamp: before.versions.timestamp! + 1_000_000,
      });
      expect([...(await loadRepository(ctx)).targets()].map((t) => t.path)).toHaveLength(1);
      // The store came back: every chunk the catalog references is there and reads back whole.
      const live: string[] = [];
      for await (const id of liveChunkIds(ctx.db)) live.push(id);
      expect(live.length).toBeGreaterThan(10);
      expect(ctx.store.missing(live)).toEqual([]);
      for (const id of live.slice(0, 5)) await ctx.store.get(id, { verify: true });
      writeFileSync(join(tmp.dir, 'v2.bin'), pseudoRandomBytes(100_000, 4));
      const p = await publish(ctx, {
        name: 'tool',
        version: '2',
        path: join(tmp.dir, 'v2.bin'),
        actor: 'test',
      });
      expect(p.generation).toBe(before.generation + 1_000_001);
      expect((await listAudit(ctx.db, { limit: 5 })).entries.map((e) => e.action)).toContain(
        'master.restore',
      );
    } finally {
      await ctx.close();
    }
  });

  /** A restore that fails leaves the target as it was: missing stays missing, empty stays empty. */
  const refusedInto = async (dir: string, p: Promise<unknown>, code: ErrorCode, re: RegExp) => {
    const existed = existsSync(dir);
    await expectDepotsyncError(p, code, re);
    if (existed) expect(readdirSync(dir)).toEqual([]);
    else expect(existsSync(dir)).toBe(false);
  };

  it('refuses a wrong passphrase before writing anything', async () => {
    await refusedInto(
      join(tmp.dir, 'W'),
      restore(join(tmp.dir, 'W'), good, 'not the passphrase at all'),
      'unauthorized',
      /wrong passphrase \(backup of master master/,
    );
    mkdirSync(join(tmp.dir, 'W2'));
    await refusedInto(
      join(tmp.dir, 'W2'),
      restore(join(tmp.dir, 'W2'), good, 'not the passphrase at all'),
      'unauthorized',
      /wrong passphrase/,
    );
  });

  it('refuses an altered file, whichever byte was changed', async () => {
    const size = statSync(good).size;
    for (const at of [Math.floor(size / 2), size - 3, 400]) {
      const altered = join(tmp.dir, `altered-${at}.dsbackup`);
      copyFileSync(good, altered);
      const b = readFileSync(altered);
      b[at] = b[at]! ^ 0x01;
      writeFileSync(altered, b);
      const dir = join(tmp.dir, `A${at}`);
      await expect(restore(dir, altered)).rejects.toThrow(/fails authentication|wrong passphrase|header/);
      expect(existsSync(dir)).toBe(false);
    }
  });

  it('refuses a truncated file, cut anywhere', async () => {
    const size = statSync(good).size;
    // Inside the header; inside a frame; exactly after the first frame (a sound frame, not the last).
    for (const len of [20, Math.floor(size / 2), 4 + 1_048_576 + 16 + headerLength(good)]) {
      const cut = join(tmp.dir, `cut-${len}.dsbackup`);
      copyFileSync(good, cut);
      truncateSync(cut, len);
      await refusedInto(
        join(tmp.dir, `T${len}`),
        restore(join(tmp.dir, `T${len}`), cut),
        'truncated',
        /truncated/,
      ).catch((e: Error) => {
        throw new Error(`cut at ${len} of ${size}: ${e.message}`);
      });
    }
  });

  it('refuses a backup of another master when the fleet fingerprint is given', async () => {
    const other = join(tmp.dir, 'other');
    await initMaster(other, { log });
    const ctx = await openMaster(other, log);
    let otherFile: string;
    try {
      otherFile = (await withPass(PASS, async () => await backupOpenMaster(ctx, { actor: 'cli', scrypt })))
        .file;
    } finally {
      await ctx.close();
    }
    await refusedInto(
      join(tmp.dir, 'O'),
      restore(join(tmp.dir, 'O'), otherFile, PASS, fingerprint),
      'conflict',
      /is a backup of another master/,
    );
  });

  it('refuses a file that is not a backup, a folder in use, and a folder that is not empty, changing nothing', async () => {
    writeFileSync(join(tmp.dir, 'notes.txt'), 'not a backup\n'.repeat(50));
    await refusedInto(
      join(tmp.dir, 'N'),
      restore(join(tmp.dir, 'N'), join(tmp.dir, 'notes.txt')),
      'bad-input',
      /not a depotsync master backup/,
    );
    // The original master, "serving": its lock is held by a live process.
    const snapshot = () => Object.fromEntries(readdirSync(M).map((n) => [n, statSync(join(M, n)).mtimeMs]));
    const beforeFiles = snapshot();
    const serving = acquireMasterLock(M, 'serve');
    try {
      await expectDepotsyncError(restore(M), 'conflict', /is in use: serve by process \d+/);
      const { ['master.lock']: held, ...rest } = snapshot();
      expect(held).toBeDefined();
      expect(rest).toEqual(beforeFiles);
    } finally {
      serving.release();
    }
    await expectDepotsyncError(restore(M), 'already-exists', /is not empty/);
    expect(snapshot()).toEqual({ ...beforeFiles });
  });

  it('adopts a certificate the lost master issued after the backup, and no other', async () => {
    const R = join(tmp.dir, 'R2');
    await restore(R);
    const ctx = await openMaster(R, log);
    try {
      const record = readRestoreRecord(R)!;
      const authorize = masterAuthorize(ctx.db, () => new Date(), certificateAdopter(ctx.db, record, log));
      const peerFor = (name: string, role: 'depot' | 'agent', issuedAt: Date) => {
        const { csrPem } = createMachineKeyAndCsr({ machineName: name, role });
        const pem = issueMachineCertificate(ctx.ca, csrPem, { machineName: name, role, now: issuedAt });
        const info = certificateInfo(pem);
        const socket = {
          getPeerCertificate: () => ({ raw: new X509Certificate(pem).raw }),
        } as unknown as TLSSocket;
        return [{ kind: 'cert' as const, ...info, commonName: name }, socket] as const;
      };
      const afterBackup = new Date(before.backupAt + 60_000);
      // Enrolled after the backup: unknown to the restored database, adopted as approved.
      const [p1, s1] = peerFor('agent-late', 'agent', afterBackup);
      expect(await authorize(p1, s1)).toMatchObject({
        ok: true,
        machine: { name: 'agent-late', role: 'agent' },
      });
      expect(await byName(ctx.db, 'agent-late')).toMatchObject({ state: 'approved', approvedBy: 'restore' });
      // Renewed after the backup: the machine is on record; the new serial joins it.
      const [p2, s2] = peerFor('depot-old', 'depot', afterBackup);
      expect(await authorize(p2, s2)).toMatchObject({ ok: true, machine: { name: 'depot-old' } });
      // Issued before the backup but unknown (a machine removed on purpose): still refused.
      const [p3, s3] = peerFor('agent-gone', 'agent', new Date(before.backupAt - 3_600_000));
      expect(await authorize(p3, s3)).toMatchObject({ ok: false, status: 401, code: 'unknown-certificate' });
      expect(
        (await listAudit(ctx.db, { limit: 10 })).entries.filter((e) => e.action === 'machine.adopt'),
      ).toHaveLength(2);
    } finally {
      await ctx.close();
    }
  });
});

describe('master backup during a publish', () => {
  const tmp = tempDir('depotsync-backup-busy-');
  afterAll(() => tmp.cleanup());

  it('is consistent: every chunk the restored catalog references is in the restored store', async () => {
    const M = join(tmp.dir, 'M');
    await initMaster(M, { log });
    const ctx = await openMaster(M, log);
    let file: string;
    try {
      writeFileSync(join(tmp.dir, 'a.bin'), pseudoRandomBytes(6_000_000, 21));
      writeFileSync(join(tmp.dir, 'b.bin'), pseudoRandomBytes(6_000_000, 22));
      await publish(ctx, { name: 'a', version: '1', path: join(tmp.dir, 'a.bin'), actor: 'test' });
      const [, b] = await Promise.all([
        await publish(ctx, { name: 'b', version: '1', path: join(tmp.dir, 'b.bin'), actor: 'test' }),
        withPass(PASS, async () => await backupOpenMaster(ctx, { actor: 'cli', scrypt })),
      ]);
      file = b.file;
    } finally {
      await ctx.close();
    }
    const R = join(tmp.dir, 'R');
    await restoreMaster(R, file, { passphrase: PASS, log });
    const r = await openMaster(R, log);
    try {
      const live: string[] = [];
      for await (const id of liveChunkIds(r.db)) live.push(id);
      expect(live.length).toBeGreaterThan(40);
      expect(r.store.missing(live)).toEqual([]);
    } finally {
      await r.close();
    }
  });
});

async function expectDepotsyncError(p: Promise<unknown>, code: ErrorCode, re: RegExp): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected an error').toBeDefined();
  expect(isDepotsyncError(e) ? e.code : e).toBe(code);
  expect((e as Error).message).toMatch(re);
}

function headerLength(file: string): number {
  return 14 + readFileSync(file).readUInt32BE(10);
}
