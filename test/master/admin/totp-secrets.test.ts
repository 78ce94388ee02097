import { existsSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDepotsyncError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { enableTotp, totpCode, verifyTotp } from '../../../master/admin/totp.js';
import { loadOrCreateKey, openSecret, sealSecret, totpKeyPath } from '../../../master/admin/totp-secrets.js';
import { openMaster, type MasterContext } from '../../../master/context.js';
import { addOperator } from '../../../master/db/operators.js';
import { initMaster } from '../../../master/init.js';
import { tempDir } from '../../helpers/tmp.js';

const T0 = Date.parse('2026-12-07T12:00:00Z');
const secretOf = async (ctx: MasterContext, name: string) =>
  (
    await ctx.db.sql.get<{ totp_secret: string | null }>('SELECT totp_secret FROM operators WHERE name = ?', [
      name,
    ])
  )?.totp_secret ?? null;

describe('TOTP secrets are encrypted at rest with a key outside the database', () => {
  const tmp = tempDir();
  const dir = join(tmp.dir, 'M');
  let ctx: MasterContext;
  beforeAll(async () => {
    await initMaster(dir, { log: silentLogger() });
    ctx = await openMaster(dir, silentLogger());
    for (const name of ['alice', 'bob', 'carol'])
      await addOperator(ctx.db, { name, role: 'admin', createdBy: 'test' });
  });
  afterAll(async () => {
    await ctx?.close();
    tmp.cleanup();
  });

  it('init creates M/keys/totp.key: 32 random bytes, mode 0600', () => {
    const key = join(dir, 'keys', 'totp.key');
    expect(totpKeyPath(join(dir, 'master.db'))).toBe(key);
    expect(readFileSync(key)).toHaveLength(32);
    expect(statSync(key).mode & 0o777).toBe(0o600);
  });

  it('stores a new secret sealed (AES-256-GCM), never in plaintext, and codes still verify', async () => {
    const { secret } = await enableTotp(ctx.db, 'alice');
    const stored = (await secretOf(ctx, 'alice'))!;
    expect(stored.startsWith('v1.')).toBe(true);
    expect(stored).not.toContain(secret);
    expect(readFileSync(join(dir, 'master.db')).includes(Buffer.from(secret))).toBe(false);
    expect(await verifyTotp(ctx.db, 'alice', totpCode(secret, T0), T0)).toBe(true);
    expect(await verifyTotp(ctx.db, 'alice', totpCode(secret, T0), T0)).toBe(false); // replay
  });

  it('refuses a sealed secret copied into another operator row (bound to the name)', async () => {
    await enableTotp(ctx.db, 'bob');
    await ctx.db.sql.run('UPDATE operators SET totp_secret = ? WHERE name = ?', [
      await secretOf(ctx, 'alice'),
      'bob',
    ]);
    const e = await (async () => {
      try {
        return await verifyTotp(ctx.db, 'bob', '123456', T0);
      } catch (x) {
        return x;
      }
    })();
    expect(isDepotsyncError(e, 'corrupt')).toBe(true);
    expect((e as Error).message).toMatch(/TOTP secret of operator bob does not decrypt/);
  });

  it('encrypts plaintext secrets of an older master when the master opens', async () => {
    const plain = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
    await ctx.db.sql.run('UPDATE operators SET totp_secret = ?, totp_last_step = 0 WHERE name = ?', [
      plain,
      'carol',
    ]);
    await ctx.close();
    ctx = await openMaster(dir, silentLogger());
    const stored = (await secretOf(ctx, 'carol'))!;
    expect(stored.startsWith('v1.')).toBe(true);
    expect(stored).not.toContain(plain);
    expect(await verifyTotp(ctx.db, 'carol', totpCode(plain, T0 + 60_000), T0 + 60_000)).toBe(true);
  });

  it('never makes a new key over sealed secrets whose key is lost; a wrong key is refused', () => {
    const other = join(tmp.dir, 'other.key');
    expect(() => loadOrCreateKey(other, () => true)).toThrow(
      /TOTP key file .* is missing, but the database holds encrypted TOTP secrets/,
    );
    expect(existsSync(other)).toBe(false);
    const k1 = loadOrCreateKey(other);
    expect(loadOrCreateKey(other).equals(k1)).toBe(true);
    unlinkSync(other);
    const k2 = loadOrCreateKey(other);
    expect(() => openSecret(k2, 'alice', sealSecret(k1, 'alice', 'SECRET'))).toThrow(/does not decrypt/);
    expect(openSecret(k1, 'alice', sealSecret(k1, 'alice', 'SECRET'))).toBe('SECRET');
  });
});
