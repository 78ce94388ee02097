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
export async function createEnrollmentToken(
  m: MasterDb,
  opts: { role: MachineRole; createdBy: string; ttlMs?: number },
): Promise<{ token: string; record: EnrollmentToken }> {
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
  const row = await m.sql.get<TokenRow>(
    'INSERT INTO enrollment_tokens (token_hash, role, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?) RETURNING *',
    [
      hashSecret(token),
      role,
      now.toISOString(),
      text(opts.createdBy, 'createdBy'),
      new Date(now.getTime() + ttlMs).toISOString(),
    ],
  );
  return { token, record: toToken(row!) };
}

/**
 * Use a token for `machine`. Single use even under concurrency: the claim is one conditional UPDATE
 * (`used_at IS NULL`), so of two requests racing with the same token exactly one wins. The token is
 * looked up by its hash, never compared as a string (no timing signal about stored tokens).
 * Run it in the same transaction as the approval, so a failed approval does not burn the token.
 */
export async function consumeEnrollmentToken(
  m: MasterDb,
  token: string,
  opts: { machine: string; role: MachineRole },
): Promise<EnrollmentToken> {
  const invalid = () =>
    new DepotsyncError('unauthorized', 'enrollment token is not valid', {
      hint: 'ask the operator for a new token (depotsync master token)',
    });
  if (!looksLikeSecret(token)) throw invalid();
  const hash = hashSecret(token);
  const now = nowIso(m);
  const claimed = await m.sql.get<TokenRow>(
    `UPDATE enrollment_tokens SET used_at = ?, used_by = ?
       WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? AND role = ? RETURNING *`,
    [now, machineName(opts.machine), hash, now, opts.role],
  );
  if (claimed) return toToken(claimed);
  // Not claimed: say why.
  const row = await m.sql.get<TokenRow>('SELECT * FROM enrollment_tokens WHERE token_hash = ?', [hash]);
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

export async function getToken(m: MasterDb, id: number): Promise<EnrollmentToken | undefined> {
  const r = await m.sql.get<TokenRow>('SELECT * FROM enrollment_tokens WHERE id = ?', [id]);
  return r && toToken(r);
}

/** Tokens, newest first; by default only those still usable. */
export async function listEnrollmentTokens(
  m: MasterDb,
  opts: { all?: boolean } = {},
): Promise<EnrollmentToken[]> {
  const rows = opts.all
    ? await m.sql.all<TokenRow>('SELECT * FROM enrollment_tokens ORDER BY id DESC')
    : await m.sql.all<TokenRow>(
        'SELECT * FROM enrollment_tokens WHERE used_at IS NULL AND expires_at > ? ORDER BY id DESC',
        [nowIso(m)],
      );
  return rows.map(toToken);
}

/** Withdraw an unused token. Returns false when it does not exist or was already used. */
export async function deleteEnrollmentToken(m: MasterDb, id: number): Promise<boolean> {
  return (
    (await m.sql.run('DELETE FROM enrollment_tokens WHERE id = ? AND used_at IS NULL', [id])).changes === 1
  );
}

const article = (role: MachineRole): string => (role === 'agent' ? 'an agent' : 'a depot');
