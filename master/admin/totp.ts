import { Secret, TOTP } from 'otpauth';
import { DepotsyncError } from '../../src/errors.js';
import type { MasterDb } from '../db/database.js';
import { openSecret, sealSecret, totpKey } from './totp-secrets.js';

/**
 * Optional second factor per operator: TOTP (RFC 6238: SHA-1, 6 digits, 30 s), accepting the usual ±1
 * step of clock drift. Each accepted time step is remembered (`operators.totp_last_step`) and a code
 * for the same or an earlier step is refused: a code read over a shoulder or from a log cannot be
 * replayed within its 90 s window.
 */
const PERIOD_S = 30;

function totpFor(name: string, secretBase32: string): TOTP {
  return new TOTP({
    issuer: 'depotsync',
    label: name,
    algorithm: 'SHA1',
    digits: 6,
    period: PERIOD_S,
    secret: Secret.fromBase32(secretBase32),
  });
}

/**
 * Give an operator a new TOTP secret; returns it (base32) and the otpauth:// URI
 * once, for an authenticator app.
 */
export async function enableTotp(m: MasterDb, name: string): Promise<{ secret: string; uri: string }> {
  const secret = new Secret({ size: 20 }).base32;
  // Stored encrypted (totp-secrets.ts); the plaintext leaves only in this answer.
  const sealed = sealSecret(await totpKey(m), name, secret);
  const r = await m.sql.run('UPDATE operators SET totp_secret = ?, totp_last_step = 0 WHERE name = ?', [
    sealed,
    name,
  ]);
  if (r.changes === 0) {
    throw new DepotsyncError('not-found', `operator ${name} does not exist`);
  }
  return { secret, uri: totpFor(name, secret).toString() };
}

export async function disableTotp(m: MasterDb, name: string): Promise<void> {
  const r = await m.sql.run('UPDATE operators SET totp_secret = NULL, totp_last_step = 0 WHERE name = ?', [
    name,
  ]);
  if (r.changes === 0) {
    throw new DepotsyncError('not-found', `operator ${name} does not exist`);
  }
}

/** Does the operator need a second factor? */
export async function totpRequired(m: MasterDb, name: string): Promise<boolean> {
  const r = await m.sql.get<{ totp_secret: string | null }>(
    'SELECT totp_secret FROM operators WHERE name = ?',
    [name],
  );
  return (r?.totp_secret ?? null) !== null;
}

/** Check a code for `name` at `nowMs`; on success the step is spent. */
export async function verifyTotp(m: MasterDb, name: string, code: unknown, nowMs: number): Promise<boolean> {
  if (typeof code !== 'string' || !/^\d{6}$/.test(code)) return false;
  const row = await m.sql.get<{ totp_secret: string | null; totp_last_step: number }>(
    'SELECT totp_secret, totp_last_step FROM operators WHERE name = ?',
    [name],
  );
  if (!row?.totp_secret) return false;
  const totp = totpFor(name, openSecret(await totpKey(m), name, row.totp_secret));
  const delta = totp.validate({ token: code, timestamp: nowMs, window: 1 });
  if (delta === null) return false;
  const step = totp.counter({ timestamp: nowMs }) + delta;
  // Threat: replay of a code already used.
  if (step <= row.totp_last_step) return false;
  const r = await m.sql.run('UPDATE operators SET totp_last_step = ? WHERE name = ? AND totp_last_step < ?', [
    step,
    name,
    step,
  ]);
  return r.changes === 1;
}

/** The code for `nowMs` (tests, and `depotsync` helpers that show what an app would). */
export function totpCode(secretBase32: string, nowMs: number): string {
  return totpFor('x', secretBase32).generate({ timestamp: nowMs });
}
