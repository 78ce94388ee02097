import { createHash, timingSafeEqual } from 'node:crypto';
import { DepotsyncError } from '../../src/errors.js';
import type { MasterDb } from '../db/database.js';
import { getOperator, type OperatorRole } from '../db/operators.js';
import { hashSecret, looksLikeSecret, newSecret } from '../db/secret.js';
import { orNull } from '../db/values.js';

/**
 * Dashboard sessions (table `operator_sessions`). The cookie holds a 256-bit secret; the database holds
 * only its SHA-256 (a copy of the database opens no session). A session ends at the first of: idle
 * timeout, absolute lifetime, logout, an admin ending it, the operator being removed or disabled.
 * The operator's role is read from the operator table on every request, so a role change applies at once.
 * The CSRF token is derived from the session secret (HMAC-like keyed hash), so it needs no storage and
 * cannot be computed without the cookie.
 */
export interface SessionTimes {
  idleMs: number;
  maxMs: number;
}

export interface ActiveSession {
  id: number;
  operator: string;
  role: OperatorRole;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  address: string | null;
  userAgent: string | null;
}

interface Row {
  id: number;
  operator: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  ended_at: string | null;
  address: string | null;
  user_agent: string | null;
}

export async function createSession(
  m: MasterDb,
  operator: string,
  opts: SessionTimes & { address?: string; userAgent?: string },
): Promise<{ secret: string; session: ActiveSession }> {
  const secret = newSecret();
  const now = m.now();
  const inserted = await m.sql.get<{ id: number }>(
    'INSERT INTO operator_sessions (secret_hash, operator, created_at, last_seen_at, expires_at, address, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id',
    [
      hashSecret(secret),
      operator,
      now.toISOString(),
      now.toISOString(),
      new Date(now.getTime() + opts.maxMs).toISOString(),
      orNull(opts.address),
      orNull(opts.userAgent?.slice(0, 200)),
    ],
  );
  const session = (await listSessions(m, opts)).find((s) => s.id === inserted?.id);
  if (!session) throw new DepotsyncError('internal', `session of ${operator} was not stored`);
  return { secret, session };
}

/**
 * The live session for a cookie secret, or why there is none. `touch` (a user action, not a live-update
 * tick) moves the idle deadline. An idle or expired session is ended here, so it cannot come back.
 */
export async function resolveSession(
  m: MasterDb,
  secret: string | undefined,
  opts: SessionTimes & { touch: boolean },
): Promise<
  | { ok: true; session: ActiveSession }
  | { ok: false; reason: 'none' | 'unknown' | 'ended' | 'idle' | 'expired' | 'operator' }
> {
  if (!secret) return { ok: false, reason: 'none' };
  if (!looksLikeSecret(secret)) return { ok: false, reason: 'unknown' };
  const r = await m.sql.get<Row>('SELECT * FROM operator_sessions WHERE secret_hash = ?', [
    hashSecret(secret),
  ]);
  if (!r) return { ok: false, reason: 'unknown' };
  if (r.ended_at) return { ok: false, reason: 'ended' };
  const now = m.now();
  const end = async (reason: 'idle' | 'expired' | 'operator') => {
    await m.sql.run(
      'UPDATE operator_sessions SET ended_at = ?, ended_by = ?, ended_reason = ? WHERE id = ? AND ended_at IS NULL',
      [now.toISOString(), 'system', reason, r.id],
    );
    return { ok: false as const, reason };
  };
  if (now.getTime() >= Date.parse(r.expires_at)) return end('expired');
  if (now.getTime() - Date.parse(r.last_seen_at) >= opts.idleMs) return end('idle');
  const op = await getOperator(m, r.operator);
  if (!op || op.disabled) return end('operator');
  if (opts.touch)
    await m.sql.run('UPDATE operator_sessions SET last_seen_at = ? WHERE id = ?', [now.toISOString(), r.id]);
  return {
    ok: true,
    session: { ...toSession(r), role: op.role, ...(opts.touch ? { lastSeenAt: now.toISOString() } : {}) },
  };
}

/** End one session (logout, or an admin). Returns false when it was not active. */
export async function endSession(m: MasterDb, id: number, by: string, reason: string): Promise<boolean> {
  const r = await m.sql.run(
    'UPDATE operator_sessions SET ended_at = ?, ended_by = ?, ended_reason = ? WHERE id = ? AND ended_at IS NULL',
    [m.now().toISOString(), by, reason, id],
  );
  return r.changes === 1;
}

/** Sessions still active now (idle or expired ones are left out even before anyone touches them). */
export async function listSessions(m: MasterDb, opts: SessionTimes): Promise<ActiveSession[]> {
  const now = m.now().getTime();
  const rows = await m.sql.all<Row>('SELECT * FROM operator_sessions WHERE ended_at IS NULL ORDER BY id');
  const roles = new Map<string, OperatorRole | undefined>();
  const out: ActiveSession[] = [];
  for (const r of rows) {
    if (now >= Date.parse(r.expires_at) || now - Date.parse(r.last_seen_at) >= opts.idleMs) continue;
    if (!roles.has(r.operator)) {
      const op = await getOperator(m, r.operator);
      roles.set(r.operator, op && !op.disabled ? op.role : undefined);
    }
    const role = roles.get(r.operator);
    if (role) out.push({ ...toSession(r), role });
  }
  return out;
}

const toSession = (r: Row): Omit<ActiveSession, 'role'> => ({
  id: r.id,
  operator: r.operator,
  createdAt: r.created_at,
  lastSeenAt: r.last_seen_at,
  expiresAt: r.expires_at,
  address: r.address,
  userAgent: r.user_agent,
});

/** The CSRF token of a session: a keyed hash of its secret (not storable, not guessable). */
export function csrfToken(secret: string): string {
  return createHash('sha256').update('depotsync csrf v1\0').update(secret).digest('base64url');
}

/** Constant-time check of a presented CSRF token (threat: cross-site request forgery by a guessed token). */
export function csrfOk(secret: string, presented: unknown): boolean {
  if (typeof presented !== 'string') return false;
  const want = Buffer.from(csrfToken(secret));
  const got = Buffer.from(presented);
  return got.length === want.length && timingSafeEqual(got, want);
}
