import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { transaction } from '../../../src/db/transaction.js';
import { silentLogger } from '../../../src/log.js';
import { openMasterDatabase, type MasterDb } from '../../../master/db/database.js';
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
beforeEach(() => {
  t = testMaster();
  m = t.m;
});
afterEach(() => t.cleanup());

describe('enrollment tokens', () => {
  it('returns the token once and stores only its hash', () => {
    const { token, record } = createEnrollmentToken(m, {
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
    const stored = m.db.prepare('SELECT * FROM enrollment_tokens').get() as Record<string, unknown>;
    expect(Object.values(stored)).not.toContain(token);
    expect(stored.token_hash).toBe(hashSecret(token));
  });

  it('is single use: the second consume fails with a clear error', () => {
    const { token } = createEnrollmentToken(m, { role: 'agent', createdBy: 'alice' });
    const used = consumeEnrollmentToken(m, token, { machine: 'pc-1', role: 'agent' });
    expect(used).toMatchObject({ usedBy: 'pc-1', usedAt: '2030-01-01T00:00:00.000Z' });
    const again = caught(() => consumeEnrollmentToken(m, token, { machine: 'pc-2', role: 'agent' }));
    expect(again.code).toBe('unauthorized');
    expect(again.message).toBe('enrollment token was already used at 2030-01-01T00:00:00.000Z');
    expect(listEnrollmentTokens(m)).toEqual([]);
    expect(listEnrollmentTokens(m, { all: true })).toHaveLength(1);
  });

  it('is single use across connections (a second process sees the claim)', () => {
    const { token } = createEnrollmentToken(m, { role: 'agent', createdBy: 'alice' });
    const other = openMasterDatabase(t.path, { logger: silentLogger(), now: () => new Date(t.clock.t) });
    try {
      expect(consumeEnrollmentToken(other, token, { machine: 'pc-1', role: 'agent' }).usedBy).toBe('pc-1');
      expect(
        caught(() => consumeEnrollmentToken(m, token, { machine: 'pc-2', role: 'agent' })).message,
      ).toMatch(/already used/);
    } finally {
      other.close();
    }
  });

  it('refuses unknown, malformed, expired and wrong-role tokens', () => {
    const unknown = caught(() =>
      consumeEnrollmentToken(m, 'A'.repeat(43), { machine: 'pc-1', role: 'agent' }),
    );
    expect(unknown.code).toBe('unauthorized');
    expect(unknown.message).toBe('enrollment token is not valid');
    expect(caught(() => consumeEnrollmentToken(m, '', { machine: 'pc-1', role: 'agent' })).code).toBe(
      'unauthorized',
    );
    expect(
      caught(() => consumeEnrollmentToken(m, 'x'.repeat(10_000), { machine: 'pc-1', role: 'agent' })).code,
    ).toBe('unauthorized');

    const { token } = createEnrollmentToken(m, { role: 'depot', createdBy: 'alice', ttlMs: 1000 });
    const wrongRole = caught(() => consumeEnrollmentToken(m, token, { machine: 'pc-1', role: 'agent' }));
    expect(wrongRole.code).toBe('forbidden');
    expect(wrongRole.message).toBe('enrollment token is for a depot, but this machine enrolls as an agent');
    t.clock.advance(1000);
    const expired = caught(() => consumeEnrollmentToken(m, token, { machine: 'd1', role: 'depot' }));
    expect(expired.code).toBe('expired');
    expect(expired.message).toBe('enrollment token expired at 2030-01-01T00:00:01.000Z');
  });

  it('is consumed together with the approval, or not at all', () => {
    const { token } = createEnrollmentToken(m, { role: 'agent', createdBy: 'alice' });
    requestEnrollment(m, {
      name: 'pc-1',
      role: 'agent',
      csrPem: '-----BEGIN CERTIFICATE REQUEST-----\nMII\n-----END CERTIFICATE REQUEST-----\n',
    });
    expect(() =>
      transaction(m.db, () => {
        consumeEnrollmentToken(m, token, { machine: 'pc-1', role: 'agent' });
        approve(m, 'pc-1', { by: 'token', certificate: { pem: 'bad', serial: '1', notAfter: new Date(0) } });
      }),
    ).toThrow(/certificate must be a PEM block/);
    expect(byName(m, 'pc-1')?.state).toBe('pending');
    expect(consumeEnrollmentToken(m, token, { machine: 'pc-1', role: 'agent' }).usedBy).toBe('pc-1');
  });

  it('validates the lifetime and can withdraw an unused token', () => {
    expect(
      caught(() => createEnrollmentToken(m, { role: 'agent', createdBy: 'a', ttlMs: 0 })).message,
    ).toMatch(/ttlMs must be an integer >= 1/);
    expect(
      caught(() => createEnrollmentToken(m, { role: 'agent', createdBy: 'a', ttlMs: 31 * 86_400_000 }))
        .message,
    ).toMatch(/at most/);
    expect(caught(() => createEnrollmentToken(m, { role: 'admin' as 'agent', createdBy: 'a' })).code).toBe(
      'bad-input',
    );
    const { token, record } = createEnrollmentToken(m, { role: 'agent', createdBy: 'alice' });
    expect(deleteEnrollmentToken(m, record.id)).toBe(true);
    expect(deleteEnrollmentToken(m, record.id)).toBe(false);
    expect(caught(() => consumeEnrollmentToken(m, token, { machine: 'pc-1', role: 'agent' })).message).toBe(
      'enrollment token is not valid',
    );
  });
});
