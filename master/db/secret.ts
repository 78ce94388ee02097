import { createHash, randomBytes } from 'node:crypto';
import { DepotsyncError } from '../../src/errors.js';

/**
 * Bearer secrets (enrollment tokens, operator tokens, enrollment poll ids): 32 random bytes as
 * base64url (43 characters). Only their SHA-256 is stored. Lookup is by the hash through a unique
 * index, so the database never compares a presented secret with a stored one character by character:
 * an attacker timing the comparison learns about a hash of their own guess, not about a real secret.
 * A secret never starts with '-' or '_': operators paste it after `--token`, and a leading dash makes
 * the command line read it as an option (a draw is repeated, which costs about one bit of 256).
 */
export const SECRET_BYTES = 32;
const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function newSecret(): string {
  for (;;) {
    const s = randomBytes(SECRET_BYTES).toString('base64url');
    if (/^[A-Za-z0-9]/.test(s)) return s;
  }
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** True when `s` has the shape of a secret we issue (checked before hashing untrusted input). */
export function looksLikeSecret(s: unknown): s is string {
  return typeof s === 'string' && SECRET_PATTERN.test(s);
}

export function requireSecretShape(s: unknown, what: string): string {
  if (!looksLikeSecret(s)) {
    throw new DepotsyncError('unauthorized', `${what} is not valid`, {
      hint: `a ${what} is 43 characters of base64url`,
    });
  }
  return s;
}
