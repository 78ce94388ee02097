import { DepotsyncError } from '../../src/errors.js';
import type { MasterDb } from './database.js';
import { hashSecret, looksLikeSecret, newSecret } from './secret.js';
import { oneOf, orUndefined, text } from './values.js';

/**
 * Operators of the admin API and dashboard, each with a role and a bearer token (stored hashed; shown
 * once by `addOperator` and `rotateOperatorToken`).
 */
export type OperatorRole = 'admin' | 'publisher' | 'viewer';
export const OPERATOR_ROLES: readonly OperatorRole[] = ['admin', 'publisher', 'viewer'];
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export interface Operator {
  name: string;
  role: OperatorRole;
  createdAt: string;
  createdBy: string;
  disabled: boolean;
  hasTotp: boolean;
  /** When the current token stops working (null only for a row no migration reached). */
  tokenExpiresAt: string | null;
  /** The last authenticated use of the token (API, dashboard login), or null. */
  lastUsedAt: string | null;
  /** The directory entry of an operator who logs in through LDAP; null for a local operator. */
  directoryDn: string | null;
}

/** Token lifetime when the caller gives none: master.json's default `operatorTokenDays`. */
export const DEFAULT_OPERATOR_TOKEN_DAYS = 90;
const DAY_MS = 86_400_000;
const expiryFrom = (now: Date, days: number | undefined) =>
  new Date(now.getTime() + (days ?? DEFAULT_OPERATOR_TOKEN_DAYS) * DAY_MS).toISOString();

interface OperatorRow {
  name: string;
  role: OperatorRole;
  created_at: string;
  created_by: string;
  totp_secret: string | null;
  disabled: number;
  token_expires_at: string | null;
  last_used_at: string | null;
  directory_dn: string | null;
}

const toOperator = (r: OperatorRow): Operator => ({
  name: r.name,
  role: r.role,
  createdAt: r.created_at,
  createdBy: r.created_by,
  disabled: r.disabled === 1,
  hasTotp: orUndefined(r.totp_secret) !== undefined,
  tokenExpiresAt: r.token_expires_at,
  lastUsedAt: r.last_used_at,
  directoryDn: r.directory_dn,
});

function operatorName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new DepotsyncError(
      'bad-input',
      `operator name must be 1-64 characters of letters, digits and . _ @ -, got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

export async function addOperator(
  m: MasterDb,
  opts: { name: string; role: OperatorRole; createdBy: string; tokenDays?: number },
): Promise<{ operator: Operator; token: string }> {
  const name = operatorName(opts.name);
  const role = oneOf(opts.role, OPERATOR_ROLES, 'operator role');
  const token = newSecret();
  // One reading of the clock: the expiry is exactly tokenDays after the creation time shown.
  const now = m.now();
  const r = await m.sql.run(
    `INSERT INTO operators (name, role, token_hash, created_at, created_by, token_expires_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (name) DO NOTHING`,
    [
      name,
      role,
      hashSecret(token),
      now.toISOString(),
      text(opts.createdBy, 'createdBy'),
      expiryFrom(now, opts.tokenDays),
    ],
  );
  if (r.changes === 0) {
    throw new DepotsyncError('already-exists', `operator ${name} already exists`, {
      hint: 'choose another name, or remove the operator first',
    });
  }
  return { operator: (await getOperator(m, name))!, token };
}

export async function removeOperator(m: MasterDb, name: string): Promise<void> {
  if ((await m.sql.run('DELETE FROM operators WHERE name = ?', [name])).changes === 0) {
    throw new DepotsyncError('not-found', `operator ${name} does not exist`);
  }
}

/**
 * Replace an operator's token (the old one stops working at once) with one valid `tokenDays` from now;
 * the new token is returned once.
 */
export async function rotateOperatorToken(m: MasterDb, name: string, tokenDays?: number): Promise<string> {
  return (await rotateOperator(m, name, tokenDays)).token;
}

export async function rotateOperator(
  m: MasterDb,
  name: string,
  tokenDays?: number,
): Promise<{ token: string; expiresAt: string }> {
  const token = newSecret();
  const expiresAt = expiryFrom(m.now(), tokenDays);
  const r = await m.sql.run('UPDATE operators SET token_hash = ?, token_expires_at = ? WHERE name = ?', [
    hashSecret(token),
    expiresAt,
    name,
  ]);
  if (r.changes === 0) {
    throw new DepotsyncError('not-found', `operator ${name} does not exist`, {
      hint: '`depotsync master operator list --dir M` shows the operators',
    });
  }
  return { token, expiresAt };
}

/**
 * After a directory login: create or update the operator's row with the role its groups give now. A
 * local operator of the same name is never taken over ('conflict'). An admin's `disabled` stays.
 */
export async function recordDirectoryOperator(
  m: MasterDb,
  opts: { name: string; dn: string; role: OperatorRole },
): Promise<Operator> {
  const name = operatorName(opts.name);
  const role = oneOf(opts.role, OPERATOR_ROLES, 'operator role');
  const r = await m.sql.run(
    `INSERT INTO operators (name, role, token_hash, created_at, created_by, token_expires_at, directory_dn, last_used_at)
       VALUES (?, ?, ?, ?, 'directory', NULL, ?, ?)
       ON CONFLICT (name) DO UPDATE SET role = excluded.role, directory_dn = excluded.directory_dn,
         last_used_at = excluded.last_used_at WHERE operators.directory_dn IS NOT NULL`,
    [name, role, hashSecret(newSecret()), m.now().toISOString(), text(opts.dn, 'dn'), m.now().toISOString()],
  );
  if (r.changes === 0)
    throw new DepotsyncError('conflict', `operator ${name} is a local operator, not a directory one`, {
      hint: 'a local operator logs in with their token; rename one of the two',
    });
  return (await getOperator(m, name))!;
}

/** A directory operator the directory no longer maps to a role: the row goes, ending their sessions. */
export async function forgetDirectoryOperator(m: MasterDb, name: string): Promise<boolean> {
  return (
    (await m.sql.run('DELETE FROM operators WHERE name = ? AND directory_dn IS NOT NULL', [name])).changes ===
    1
  );
}

export async function setOperatorDisabled(m: MasterDb, name: string, disabled: boolean): Promise<void> {
  if (
    (await m.sql.run('UPDATE operators SET disabled = ? WHERE name = ?', [disabled ? 1 : 0, name]))
      .changes === 0
  ) {
    throw new DepotsyncError('not-found', `operator ${name} does not exist`);
  }
}

export async function getOperator(m: MasterDb, name: string): Promise<Operator | undefined> {
  const r = await m.sql.get<OperatorRow>('SELECT * FROM operators WHERE name = ?', [name]);
  return r && toOperator(r);
}

export async function listOperators(m: MasterDb): Promise<Operator[]> {
  return (await m.sql.all<OperatorRow>('SELECT * FROM operators ORDER BY name')).map(toOperator);
}

/**
 * The enabled operator holding this bearer token, or null. Lookup is by the token's SHA-256 through
 * a unique index: no stored secret is ever compared with the presented one (no timing oracle), and a
 * malformed token is refused before any work.
 */
export async function authenticateOperator(
  m: MasterDb,
  token: string,
): Promise<{ name: string; role: OperatorRole } | null> {
  const r = await checkOperatorToken(m, token);
  return r.ok ? r.operator : null;
}

export type TokenCheck =
  | { ok: true; operator: { name: string; role: OperatorRole } }
  | { ok: false; reason: 'unknown' }
  | { ok: false; reason: 'expired'; name: string; expiredAt: string };

interface TokenRow {
  name: string;
  role: OperatorRole;
  token_expires_at: string | null;
  last_used_at: string | null;
}

/** How often the last-use time is written at most (one write per request would be wasted). */
const LAST_USED_EVERY_MS = 60_000;

/**
 * `authenticateOperator` with the reason for a refusal: an expired token is told apart (it belonged to
 * an operator; the message says when it expired and how to rotate it), an unknown or disabled one is
 * not. A success records the last use.
 */
export async function checkOperatorToken(m: MasterDb, token: string): Promise<TokenCheck> {
  if (!looksLikeSecret(token)) return { ok: false, reason: 'unknown' };
  const r = await m.sql.get<TokenRow>(
    'SELECT name, role, token_expires_at, last_used_at FROM operators WHERE token_hash = ? AND disabled = 0',
    [hashSecret(token)],
  );
  if (!r) return { ok: false, reason: 'unknown' };
  const now = m.now();
  if (r.token_expires_at !== null && now.getTime() >= Date.parse(r.token_expires_at)) {
    return { ok: false, reason: 'expired', name: r.name, expiredAt: r.token_expires_at };
  }
  if (r.last_used_at === null || now.getTime() - Date.parse(r.last_used_at) >= LAST_USED_EVERY_MS) {
    await m.sql.run('UPDATE operators SET last_used_at = ? WHERE name = ?', [now.toISOString(), r.name]);
  }
  return { ok: true, operator: { name: r.name, role: r.role } };
}

/** The message an expired operator token is refused with (API and dashboard). */
export function expiredTokenMessage(name: string, expiredAt: string): string {
  return `token of operator ${name} expired on ${expiredAt.slice(0, 10)}; rotate it with \`depotsync master operator rotate\``;
}
