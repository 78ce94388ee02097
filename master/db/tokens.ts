import { DepotsyncError } from '../../src/errors.js';
import { nowIso, type MasterDb } from './database.js';
import type { MachineRole } from './machines.js';
import { MACHINE_ROLES } from './machines.js';
import { hashSecret, looksLikeSecret, newSecret } from './secret.js';
import { count, machineName, oneOf, orUndefined, text } from './values.js';

/**
 * One-time enrollment tokens (docs/architecture.md): an operator makes one for a role; a machine that
 * presents it with its CSR is approved at once. The token is shown once and only its SHA-256 is stored.
 */
export interface EnrollmentToken {
  id: number;
  role: MachineRole;
  createdAt: string;
  createdBy: string;
  expiresAt: string;
  usedAt?: string;
  usedBy?: string;
}

export const TOKEN_DEFAULTS = {
  ttlMs: 24 * 60 * 60 * 1000,
  maxTtlMs: 30 * 24 * 60 * 60 * 1000,
} as const;

interface TokenRow {
  id: number;
  role: MachineRole;
  created_at: string;
  created_by: string;
  expires_at: string;
  used_at: string | null;
  used_by: string | null;
}

function toToken(r: TokenRow): EnrollmentToken {
  const t: EnrollmentToken = {
    id: r.id,
    role: r.role,
    createdAt: r.created_at,
    createdBy: r.created_by,
    expiresAt: r.expires_at,
  };
  const usedAt = orUndefined(r.used_at);
  const usedBy = orUndefined(r.used_by);
  if (usedAt !== undefined) t.usedAt = usedAt;
  if (usedBy !== undefined) t.usedBy = usedBy;
  return t;
}

/** Make a token; the plain token is returned here and never again. */
export function createEnrollmentToken(
  m: MasterDb,
  opts: { role: MachineRole; createdBy: string; ttlMs?: number },
): { token: string; record: EnrollmentToken } {
  const role = oneOf(opts.role, MACHINE_ROLES, 'token role');
  const ttlMs = count(opts.ttlMs ?? TOKEN_DEFAULTS.ttlMs, 'token ttlMs', 1);
  if (ttlMs > TOKEN_DEFAULTS.maxTtlMs) {
    throw new DepotsyncError(
      'bad-input',
      `token ttlMs must be at most ${TOKEN_DEFAULTS.maxTtlMs} (30 days), got ${ttlMs}`,
    );
  }
  const token = newSecret();
  const now = m.now();
  const id = m.db
    .prepare(
      'INSERT INTO enrollment_tokens (token_hash, role, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?)',
    )
    .run(
      hashSecret(token),
      role,
      now.toISOString(),
      text(opts.createdBy, 'createdBy'),
      new Date(now.getTime() + ttlMs).toISOString(),
    ).lastInsertRowid;
  return { token, record: getToken(m, Number(id)) as EnrollmentToken };
}

/**
 * Use a token for `machine`. Single use even under concurrency: the claim is one conditional UPDATE
 * (`used_at IS NULL`), so of two requests racing with the same token exactly one wins. The token is
 * looked up by its hash, never compared as a string (no timing signal about stored tokens).
 * Run it in the same transaction as the approval, so a failed approval does not burn the token.
 */
export function consumeEnrollmentToken(
  m: MasterDb,
  token: string,
  opts: { machine: string; role: MachineRole },
): EnrollmentToken {
  const invalid = () =>
    new DepotsyncError('unauthorized', 'enrollment token is not valid', {
      hint: 'ask the operator for a new token (depotsync master token)',
    });
  if (!looksLikeSecret(token)) throw invalid();
  const hash = hashSecret(token);
  const now = nowIso(m);
  const claimed = m.db
    .prepare(
      `UPDATE enrollment_tokens SET used_at = ?, used_by = ?
       WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? AND role = ? RETURNING *`,
    )
    .get(now, machineName(opts.machine), hash, now, opts.role) as TokenRow | undefined;
  if (claimed) return toToken(claimed);
  // Not claimed: say why.
  const row = m.db.prepare('SELECT * FROM enrollment_tokens WHERE token_hash = ?').get(hash) as
    TokenRow | undefined;
  if (!row) throw invalid();
  if (row.used_at !== null) {
    throw new DepotsyncError('unauthorized', `enrollment token was already used at ${row.used_at}`, {
      hint: 'a token enrolls one machine; ask the operator for a new token',
    });
  }
  if (row.expires_at <= now) {
    throw new DepotsyncError('expired', `enrollment token expired at ${row.expires_at}`, {
      hint: 'ask the operator for a new token',
    });
  }
  throw new DepotsyncError(
    'forbidden',
    `enrollment token is for ${article(row.role)}, but this machine enrolls as ${article(opts.role)}`,
    {
      hint: `enroll as ${article(row.role)}, or ask for ${article(opts.role)} token`,
    },
  );
}

export function getToken(m: MasterDb, id: number): EnrollmentToken | undefined {
  const r = m.db.prepare('SELECT * FROM enrollment_tokens WHERE id = ?').get(id) as TokenRow | undefined;
  return r && toToken(r);
}

/** Tokens, newest first; by default only those still usable. */
export function listEnrollmentTokens(m: MasterDb, opts: { all?: boolean } = {}): EnrollmentToken[] {
  const rows = m.db
    .prepare(
      'SELECT * FROM enrollment_tokens WHERE @all OR (used_at IS NULL AND expires_at > @now) ORDER BY id DESC',
    )
    .all({ all: opts.all ? 1 : 0, now: nowIso(m) }) as TokenRow[];
  return rows.map(toToken);
}

/** Withdraw an unused token. Returns false when it does not exist or was already used. */
export function deleteEnrollmentToken(m: MasterDb, id: number): boolean {
  return m.db.prepare('DELETE FROM enrollment_tokens WHERE id = ? AND used_at IS NULL').run(id).changes === 1;
}

const article = (role: MachineRole): string => (role === 'agent' ? 'an agent' : 'a depot');
