import { copyFileSync, existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { DEFAULT_CLIENT_LIMITS, TrustedMetadata } from '../../../src/tuf/client.js';
import { keyAlerts } from '../../../master/admin/key-alerts.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { getMetadataFile } from '../../../master/db/metadata.js';
import { initMaster } from '../../../master/init.js';
import { parseKeyRole, readKeyFile, rootKeyFiles } from '../../../master/keys.js';
import { publish } from '../../../master/publish/publish.js';
import { loadRepository } from '../../../master/repository.js';
import { refreshOnce } from '../../../master/server/refresher.js';
import { decodeRootRequest, encodeRootRequest, signRootRequest } from '../../../master/trust/request.js';
import { changeKeys, importRootRequest } from '../../../master/trust/rotate.js';
import { keysStatus } from '../../../master/trust/status.js';
import { pseudoRandomBytes, tempDir } from '../../helpers/tmp.js';

const DAY = 86_400_000;
const log = silentLogger();

async function master(
  dir: string,
  opts: Parameters<typeof initMaster>[1] extends infer O ? Partial<O> : never = {},
): Promise<MasterContext> {
  await initMaster(dir, { log, ...opts });
  return await openMaster(dir, log);
}

/** Walk the stored roots from v1 as a client does (each signed by the previous root's threshold and its own). */
async function walk(ctx: MasterContext): Promise<number> {
  const t = new TrustedMetadata(
    (await getMetadataFile(ctx.db, '1.root.json'))!.bytes,
    { ...DEFAULT_CLIENT_LIMITS },
    '1.root.json',
  );
  for (let v = 2; ; v++) {
    const f = await getMetadataFile(ctx.db, `${v}.root.json`);
    if (!f) return t.root.md.signed.version;
    t.updateRoot(f.bytes, f.name);
  }
}

const requestFile = (r: { request: { file: string } | null }) => r.request!.file;

describe('master key lifecycle', () => {
  const tmp = tempDir();
  const open: MasterContext[] = [];
  afterAll(async () => {
    for (const c of open) await c.close();
    tmp.cleanup();
  });
  const make = async (name: string, opts = {}) => {
    const c = await master(join(tmp.dir, name), opts);
    open.push(c);
    return c;
  };

  it('rotates every role: a new key, a root version signed by old and new root keys, the old key gone', async () => {
    const ctx = await make('all');
    const before = await keysStatus(ctx, Date.now());
    expect(before.roles.map((r) => [r.role, r.threshold, r.keyids.length])).toEqual([
      ['root', 1, 1],
      ['targets', 1, 1],
      ['bins', 1, 1],
      ['snapshot', 1, 1],
      ['timestamp', 1, 1],
    ]);
    // Bins are signed by the targets key until they get their own.
    expect(before.roles.find((r) => r.role === 'bins')!.keyids).toEqual(
      before.roles.find((r) => r.role === 'targets')!.keyids,
    );
    expect(before.rootRenewal).toBe('automatic');
    for (const role of ['timestamp', 'snapshot', 'targets', 'bins', 'root'] as const) {
      const r = await changeKeys(ctx, role, { actor: 'test' });
      expect(r.state).toBe('committed');
      expect(r.newKeyIds).not.toEqual(r.oldKeyIds);
    }
    const after = await keysStatus(ctx, Date.now());
    for (const role of ['root', 'targets', 'bins', 'snapshot', 'timestamp']) {
      const a = after.roles.find((r) => r.role === role)!;
      expect(a.keyids, role).not.toEqual(before.roles.find((r) => r.role === role)!.keyids);
      expect(a.keysOnMaster, role).toBe(1);
    }
    // timestamp, snapshot, targets and root each made a root version; a client walks them from v1.
    expect(await walk(ctx)).toBe(5);
    expect(rootKeyFiles(ctx.layout.keysDir).map((f) => readKeyFile(f).keyid)).toEqual(after.roles[0]!.keyids);
    // The catalog goes on with the new keys.
    writeFileSync(join(tmp.dir, 'p.bin'), pseudoRandomBytes(100_000, 3));
    const p = await publish(ctx, { name: 'p', version: '1', path: join(tmp.dir, 'p.bin'), actor: 'test' });
    expect((await loadRepository(ctx)).generation).toBe(p.generation);
  });

  it('init takes K of N root keys, and --offline-root keeps them off the master; bad thresholds are refused', async () => {
    await expect(master(join(tmp.dir, 'bad'), { rootKeys: 2, rootThreshold: 3 })).rejects.toThrow(
      /--root-threshold must be an integer from 1 to 2/,
    );
    const usb = join(tmp.dir, 'usb');
    const ctx = await make('offline', { rootKeys: 3, rootThreshold: 2, offlineRootDir: usb });
    expect(rootKeyFiles(ctx.layout.keysDir)).toEqual([]);
    expect(rootKeyFiles(usb)).toHaveLength(3);
    const s = await keysStatus(ctx, Date.now());
    expect(s.roles[0]).toMatchObject({ role: 'root', threshold: 2, keysOnMaster: 0 });
    expect(s.rootRenewal).toBe('offline');
  });

  it('root kept offline: a signing request, signed elsewhere by a threshold, then imported', async () => {
    const usb = join(tmp.dir, 'usb2');
    const ctx = await make('req', { rootKeys: 3, rootThreshold: 2, offlineRootDir: usb });
    const r = await changeKeys(ctx, 'timestamp', { actor: 'test', requestOut: join(tmp.dir, 'req.json') });
    expect(r).toMatchObject({ state: 'signing-request', rootVersion: 2, generation: null });
    expect((await keysStatus(ctx, Date.now())).pendingRootRequest).toMatchObject({
      rootVersion: 2,
      digest: r.request!.digest,
    });
    const keys = rootKeyFiles(usb).map(readKeyFile);
    const file = requestFile(r);
    const one = signRootRequest(decodeRootRequest(readFileSync(file), file), [keys[0]!], file);
    expect(one.old).toEqual({ valid: 1, threshold: 2 });
    writeFileSync(file, encodeRootRequest(one.request));
    await expect(importRootRequest(ctx, file, { actor: 'test' })).rejects.toThrow(/orphaned/);
    const two = signRootRequest(decodeRootRequest(readFileSync(file), file), [keys[1]!], file);
    writeFileSync(file, encodeRootRequest(two.request));
    const imported = await importRootRequest(ctx, file, { actor: 'test' });
    expect(imported.rootVersion).toBe(2);
    expect(await walk(ctx)).toBe(2);
    expect(readKeyFile(join(ctx.layout.keysDir, 'timestamp.pem')).keyid).toBe(r.newKeyIds[0]);
    expect((await loadRepository(ctx)).rootVersion).toBe(2);
    // Imported once: the same file again is refused.
    await expect(importRootRequest(ctx, file, { actor: 'test' })).rejects.toThrow(
      /no root signing request is pending/,
    );
  });

  it('refuses a root below its own threshold and a rotation that would orphan depots', async () => {
    const ctx = await make('orphan', { offlineRootDir: join(tmp.dir, 'usb3') });
    const files = () => readdirSync(ctx.layout.keysDir).sort();
    const had = files();
    await expect(
      changeKeys(ctx, 'root', { actor: 'test', newRootKeys: 2, newRootThreshold: 3 }),
    ).rejects.toThrow(/root threshold must be an integer from 1 to 2/);
    expect(files()).toEqual(had);
    // New root keys only (the old, offline one never signs): depots trusting v1 could not follow.
    const r = await changeKeys(ctx, 'root', { actor: 'test', newRootKeyDir: join(tmp.dir, 'usb3-new') });
    expect(r.state).toBe('signing-request');
    await expect(importRootRequest(ctx, requestFile(r), { actor: 'test' })).rejects.toThrow(
      expect.objectContaining({
        message: expect.stringMatching(
          /not signed by a threshold of the old root keys \(v1\); depots and agents that trust root v1 could not verify it \(they would be orphaned\)/,
        ),
      }),
    );
    expect((await loadRepository(ctx)).rootVersion).toBe(1);
  });

  it('refuses a signing request that was altered or is for another master', async () => {
    const usbA = join(tmp.dir, 'usbA');
    const usbB = join(tmp.dir, 'usbB');
    const a = await make('A', { offlineRootDir: usbA });
    const b = await make('B', { offlineRootDir: usbB });
    const ra = await changeKeys(a, 'renew', { actor: 'test', requestOut: join(tmp.dir, 'a.json') });
    const rb = await changeKeys(b, 'renew', { actor: 'test', requestOut: join(tmp.dir, 'b.json') });
    const keyA = rootKeyFiles(usbA).map(readKeyFile);
    const keyB = rootKeyFiles(usbB).map(readKeyFile);
    const fa = requestFile(ra);
    // Altered before signing: the master's signature over the request no longer verifies.
    const altered = decodeRootRequest(readFileSync(fa), fa);
    altered.root.signed.expires = '2099-01-01T00:00:00Z';
    expect(() => signRootRequest(altered, keyA, 'altered')).toThrow(
      /the request was altered, or was not made by master/,
    );
    // For another master: its key is not a root key of this request; and it is refused by the other master.
    expect(() => signRootRequest(decodeRootRequest(readFileSync(fa), fa), keyB, fa)).toThrow(
      /is not a root key of master/,
    );
    const fpA = (await keysStatus(a, Date.now())).rootFingerprint;
    const fpB = (await keysStatus(b, Date.now())).rootFingerprint;
    expect(() => signRootRequest(decodeRootRequest(readFileSync(fa), fa), keyA, fa, fpB)).toThrow(
      /belongs to another master|is for master/,
    );
    const signed = signRootRequest(decodeRootRequest(readFileSync(fa), fa), keyA, fa, fpA);
    writeFileSync(fa, encodeRootRequest(signed.request));
    await expect(importRootRequest(b, fa, { actor: 'test' })).rejects.toThrow(
      /is for master .* not this master/,
    );
    // Altered after signing (another expiry): not the root this master asked for.
    const late = decodeRootRequest(readFileSync(fa), fa);
    late.root.signed.expires = '2099-01-01T00:00:00Z';
    writeFileSync(join(tmp.dir, 'late.json'), encodeRootRequest(late));
    await expect(importRootRequest(a, join(tmp.dir, 'late.json'), { actor: 'test' })).rejects.toThrow(
      /not the one this master asked to be signed/,
    );
    expect((await importRootRequest(a, fa, { actor: 'test' })).rootVersion).toBe(2);
    expect(rb.state).toBe('signing-request');
  });

  it('an unsupported role name is a usage error', () => {
    expect(() => parseKeyRole('delegations', 'master keys rotate')).toThrow(
      expect.objectContaining({
        code: 'usage',
        message: expect.stringMatching(
          /--role must be one of root, targets, snapshot, timestamp, bins, got "delegations"/,
        ),
      }),
    );
  });

  it('master serve renews the root 60 days before expiry while its keys are online; offline, alerts at 60, 30 and 7 days', async () => {
    const online = await make('renew');
    const start = Date.now();
    expect((await refreshOnce(online, () => new Date(start + 290 * DAY))).rootVersion).toBeUndefined();
    const out = await refreshOnce(online, () => new Date(start + 310 * DAY));
    expect(out.rootVersion).toBe(2);
    expect(Date.parse((await keysStatus(online, start)).roles[0]!.expires)).toBeGreaterThan(
      start + 670 * DAY,
    );
    expect(await walk(online)).toBe(2);

    const offline = await make('alerts', { offlineRootDir: join(tmp.dir, 'usb4') });
    expect((await refreshOnce(offline, () => new Date(start + 310 * DAY))).rootVersion).toBeUndefined();
    const rootAlert = async (days: number) =>
      (await keyAlerts(offline.db, start + days * DAY)).find((a) => a.key === 'metadata-expiry:root');
    expect(await rootAlert(290)).toBeUndefined();
    expect(await rootAlert(306)).toMatchObject({
      level: 'warning',
      message: expect.stringMatching(/expires in 5[89] day/),
    });
    expect(await rootAlert(336)).toMatchObject({
      level: 'warning',
      message: expect.stringMatching(/expires in 2[89] day/),
    });
    expect(await rootAlert(359)).toMatchObject({ level: 'error' });
    expect(await rootAlert(366)).toMatchObject({
      level: 'error',
      message: expect.stringMatching(/expired on/),
    });
    // An online role that is not re-signed (no master serve) is flagged before it expires.
    expect(
      (await keyAlerts(offline.db, start + 310 * DAY + 20 * 3_600_000)).find(
        (a) => a.key === 'metadata-expiry:timestamp',
      ),
    ).toMatchObject({ level: 'warning' });
    expect(existsSync(join(offline.layout.keysDir, 'root.pem'))).toBe(false);
  });
  it('a serving master signs with a key rotated by another process; a crash between commit and rename is finished at the next start', async () => {
    const dir = join(tmp.dir, 'live');
    const serving = await make('live');
    const cli = await openMaster(dir, log);
    const r = await changeKeys(cli, 'timestamp', { actor: 'test' });
    await cli.close();
    // The serving context reads the new key file on its next re-signing.
    const out = await refreshOnce(serving, () => new Date(Date.now() + 13 * 3_600_000));
    expect(out.metadata).toEqual(['timestamp.json']);
    expect(serving.signers.timestamp.keyid).toBe(r.newKeyIds[0]);

    // A crash after the commit of a rotation, before its key was renamed into place: finished at open.
    const again = await changeKeys(serving, 'snapshot', { actor: 'test' });
    const keysDir = serving.layout.keysDir;
    renameSync(join(keysDir, 'snapshot.pem'), join(keysDir, 'snapshot.next.pem'));
    copyFileSync(join(keysDir, 'timestamp.pem'), join(keysDir, 'snapshot.pem'));
    // And a key staged for a change that never committed: dropped.
    copyFileSync(join(keysDir, 'targets.pem'), join(keysDir, 'bins.next.pem'));
    const reopened = await openMaster(dir, log);
    open.push(reopened);
    expect(readKeyFile(join(keysDir, 'snapshot.pem')).keyid).toBe(again.newKeyIds[0]);
    expect(existsSync(join(keysDir, 'snapshot.next.pem'))).toBe(false);
    expect(existsSync(join(keysDir, 'bins.next.pem'))).toBe(false);
    expect((await loadRepository(reopened)).generation).toBeGreaterThan(1);
  });
});
