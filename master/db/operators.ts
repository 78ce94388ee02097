import { DepotsyncError } from '../../src/errors.js';
import { nowIso, type MasterDb } from './database.js';
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
}

interface OperatorRow {
  name: string;
  role: OperatorRole;
  created_at: string;
  created_by: string;
  totp_secret: string | null;
  disabled: number;
}

const toOperator = (r: OperatorRow): Operator => ({
  name: r.name,
  role: r.role,
  createdAt: r.created_at,
  createdBy: r.created_by,
  disabled: r.disabled === 1,
  hasTotp: orUndefined(r.totp_secret) !== undefined,
});

function operatorName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new DepotsyncError('bad-input', `operator name must be 1-64 characters of letters, digits and . _ @ -, got ${JSON.stringify(name)}`);
  }
  return name;
}

export function addOperator(m: MasterDb, opts: { name: string; role: OperatorRole; createdBy: string }): { operator: Operator; token: string } {
  const name = operatorName(opts.name);
  const role = oneOf(opts.role, OPERATOR_ROLES, 'operator role');
  const token = newSecret();
  const r = m.db
    .prepare('INSERT INTO operators (name, role, token_hash, created_at, created_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING')
    .run(name, role, hashSecret(token), nowIso(m), text(opts.createdBy, 'createdBy'));
  if (r.changes === 0) {
    throw new DepotsyncError('already-exists', `operator ${name} already exists`, { hint: 'choose another name, or remove the operator first' });
  }
  return { operator: getOperator(m, name) as Operator, token };
}

export function removeOperator(m: MasterDb, name: string): void {
  if (m.db.prepare('DELETE FROM operators WHERE name = ?').run(name).changes === 0) {
    throw new DepotsyncError('not-found', `operator ${name} does not exist`);
  }
}

/** Replace an operator's token (the old one stops working at once); the new token is returned once. */
export function rotateOperatorToken(m: MasterDb, name: string): string {
  const token = newSecret();
  if (m.db.prepare('UPDATE operators SET token_hash = ? WHERE name = ?').run(hashSecret(token), name).changes === 0) {
    throw new DepotsyncError('not-found', `operator ${name} does not exist`);
  }
  return token;
}

export function setOperatorDisabled(m: MasterDb, name: string, disabled: boolean): void {
  if (m.db.prepare('UPDATE operators SET disabled = ? WHERE name = ?').run(disabled ? 1 : 0, name).changes === 0) {
    throw new DepotsyncError('not-found', `operator ${name} does not exist`);
  }
}

export function getOperator(m: MasterDb, name: string): Operator | undefined {
  const r = m.db.prepare('SELECT * FROM operators WHERE name = ?').get(name) as OperatorRow | undefined;
  return r && toOperator(r);
}

export function listOperators(m: MasterDb): Operator[] {
  return (m.db.prepare('SELECT * FROM operators ORDER BY name').all() as OperatorRow[]).map(toOperator);
}

/**
 * The enabled operator holding this bearer token, or null. Lookup is by the token's SHA-256 through
 * a unique index: no stored secret is ever compared with the presented one (no timing oracle), and a
 * malformed token is refused before any work.
 */
export function authenticateOperator(m: MasterDb, token: string): { name: string; role: OperatorRole } | null {
  if (!looksLikeSecret(token)) return null;
  const r = m.db.prepare('SELECT name, role FROM operators WHERE token_hash = ? AND disabled = 0').get(hashSecret(token)) as
    | { name: string; role: OperatorRole }
    | undefined;
  return r ?? null;
}
