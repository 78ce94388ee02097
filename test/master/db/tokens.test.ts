import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { transaction } from '../../../master/db/database.js';
import type { MasterDb } from '../../../master/db/database.js';
import { approve, byName, requestEnrollment } from '../../../master/db/machines.js';
import { hashSecret } from '../../../master/db/secret.js';
import {
  consumeEnrollmentToken,
  createEnrollmentToken,
  deleteEnrollmentToken,
  listEnrollmentTokens,
} from '../../../master/db/tokens.js';
import { caught, testMaster, type TestMaster } from './helpers.js';

let t: TestMaster;
let m: MasterDb;
beforeEach(async () => {
  t = await testMaster();
  m = t.m;
});
afterEach(() => t.cleanup());

describe('enrollment tokens', () => {
  it('returns the token once and stores only its hash', async () => {
    const { token, record } = await createEnrollmentToken(m, {
      role: 'depot',
      createdBy: 'alice',
      ttlMs: 3_600_000,
    });
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(record).toMatchObject({
      role: 'depot',
      createdBy: 'alice',
      createdAt: '2030-01-01T00:00:00.000Z',
      expiresAt: '2030-01-01T01:00:00.000Z',
    });
    const stored = (await m.sql.get('SELECT * FROM enrollment_tokens')) as Record<string, unknown>;
    expect(Object.values(stored)).not.toContain(token);
    expect(stored.token_hash).toBe(hashSecret(token));
  });

  it('is single use: the second consume fails with a clear error', async () => {
    const { token } = await createEnrollmentToken(m, { role: 'agent', createdBy: 'alice' });
    const used = await consumeEnrollmentToken(m, token, { machine: 'pc-1', role: 'agent' });
    expect(used).toMatchObject({ usedBy: 'pc-1', usedAt: '2030-01-01T00:00:00.000Z' });
    const again = await caught(
      async () => await consumeEnrollmentToken(m, token, { machine: 'pc-2', role: 'agent' }),
    );
    expect(again.code).toBe('unauthorized');
    expect(again.message).toBe('enrollment token was already used at 2030-01-01T00:00:00.000Z');
    expect(await listEnrollmentTokens(m)).toEqual([]);
    expect(await listEnrollmentTokens(m, { all: true })).toHaveLength(1);
  });

  it('is single use across connections (a second process sees the claim)', async () => {
    const { token } = await createEnrollmentToken(m, { role: 'agent', createdBy: 'alice' });
    const other = await t.another();
    try {
      expect((await consumeEnrollmentToken(other, token, { machine: 'pc-1', role: 'agent' })).usedBy).toBe(
        'pc-1',
      );
      expect(
        (await caught(async () => await consumeEnrollmentToken(m, token, { machine: 'pc-2', role: 'agent' })))
          .message,
      ).toMatch(/already used/);
    } finally {
      await other.close();
    }
  });

  it('refuses unknown, malformed, expired and wrong-role tokens', async () => {
    const unknown = await caught(
      async () => await consumeEnrollmentToken(m, 'A'.repeat(43), { machine: 'pc-1', role: 'agent' }),
    );
    expect(unknown.code).toBe('unauthorized');
    expect(unknown.message).toBe('enrollment token is not valid');
    expect(
      (await caught(async () => await consumeEnrollmentToken(m, '', { machine: 'pc-1', role: 'agent' })))
        .code,
    ).toBe('unauthorized');
    expect(
      (
        await caught(
          async () => await consumeEnrollmentToken(m, 'x'.repeat(10_000), { machine: 'pc-1', role: 'agent' }),
        )
      ).code,
    ).toBe('unauthorized');

    const { token } = await createEnrollmentToken(m, { role: 'depot', createdBy: 'alice', ttlMs: 1000 });
    const wrongRole = await caught(
      async () => await consumeEnrollmentToken(m, token, { machine: 'pc-1', role: 'agent' }),
    );
    expect(wrongRole.code).toBe('forbidden');
    expect(wrongRole.message).toBe('enrollment token is for a depot, but this machine enrolls as an agent');
    t.clock.advance(1000);
    const expired = await caught(
      async () => await consumeEnrollmentToken(m, token, { machine: 'd1', role: 'depot' }),
    );
    expect(expired.code).toBe('expired');
    expect(expired.message).toBe('enrollment token expired at 2030-01-01T00:00:01.000Z');
  });

  it('is consumed together with the approval, or not at all', async () => {
    const { token } = await createEnrollmentToken(m, { role: 'agent', createdBy: 'alice' });
    await requestEnrollment(m, {
      name: 'pc-1',
      role: 'agent',
      csrPem: '-----BEGIN CERTIFICATE REQUEST-----\nMII\n-----END CERTIFICATE REQUEST-----\n',
    });
    await expect(
      transaction(m, async () => {
        await consumeEnrollmentToken(m, token, { machine: 'pc-1', role: 'agent' });
        await approve(m, 'pc-1', {
          by: 'token',
          certificate: { pem: 'bad', serial: '1', notAfter: new Date(0) },
        });
      }),
    ).rejects.toThrow(/certificate must be a PEM block/);
    expect((await byName(m, 'pc-1'))?.state).toBe('pending');
    expect((await consumeEnrollmentToken(m, token, { machine: 'pc-1', role: 'agent' })).usedBy).toBe('pc-1');
  });

  it('validates the lifetime and can withdraw an unused token', async () => {
    expect(
      (await caught(async () => await createEnrollmentToken(m, { role: 'agent', createdBy: 'a', ttlMs: 0 })))
        .message,
    ).toMatch(/ttlMs must be an integer >= 1/);
    expect(
      (
        await caught(
          async () =>
            await createEnrollmentToken(m, { role: 'agent', createdBy: 'a', ttlMs: 31 * 86_400_000 }),
        )
      ).message,
    ).toMatch(/at most/);
    expect(
      (await caught(async () => await createEnrollmentToken(m, { role: 'admin' as 'agent', createdBy: 'a' })))
        .code,
    ).toBe('bad-input');
    const { token, record } = await createEnrollmentToken(m, { role: 'agent', createdBy: 'alice' });
    expect(await deleteEnrollmentToken(m, record.id)).toBe(true);
    expect(await deleteEnrollmentToken(m, record.id)).toBe(false);
    expect(
      (await caught(async () => await consumeEnrollmentToken(m, token, { machine: 'pc-1', role: 'agent' })))
        .message,
    ).toBe('enrollment token is not valid');
  });
});
