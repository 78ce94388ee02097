import type { MiddlewareHandler } from 'hono';
import type { ServeEnv } from '../../../src/serve/env.js';
import type { MasterDb } from '../../db/database.js';
import { checkOperatorToken, expiredTokenMessage, getOperator, type OperatorRole } from '../../db/operators.js';

/** What each role may do: viewer reads, publisher also publishes and unpublishes, admin does everything. */
const RANK: Record<OperatorRole, number> = { viewer: 0, publisher: 1, admin: 2 };

/**
 * `Authorization: Bearer <operator token>` on every admin route. The token is looked up by its hash
 * (no stored secret is compared with the presented one); a missing or unknown token is 401, an expired
 * one too, saying when it expired. With `requireTotp` (master.json) an operator without TOTP may only
 * enroll it for themselves (POST .../operators/NAME/totp); everything else is 403 until then.
 */
export function operatorAuth(db: MasterDb, opts: { requireTotp?: () => boolean } = {}): MiddlewareHandler<ServeEnv> {
  return async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const m = /^Bearer ([^\s]+)$/i.exec(header.trim());
    const refuse = (message: string) =>
      c.json({ error: { code: 'unauthorized', message, hint: 'send Authorization: Bearer <token> (depotsync master operator add prints one)' } }, 401, {
        'www-authenticate': 'Bearer realm="depotsync"',
      });
    if (!m) return refuse('the operator API needs an operator bearer token');
    const checked = checkOperatorToken(db, m[1] as string);
    if (!checked.ok && checked.reason === 'expired') return refuse(expiredTokenMessage(checked.name, checked.expiredAt));
    if (!checked.ok) return refuse('operator token is not valid (unknown, removed or disabled)');
    const operator = checked.operator;
    const enrollOnly = opts.requireTotp?.() && !getOperator(db, operator.name)?.hasTotp;
    if (enrollOnly && !isTotpEnrollment(c.req.method, c.req.path, operator.name)) {
      return c.json(
        {
          error: {
            code: 'forbidden',
            message:
              `master.json requires TOTP for every operator and operator ${operator.name} has none; ` +
              'until it is enrolled only TOTP enrollment is allowed',
            hint: `POST /v1/admin/operators/${operator.name}/totp with this token enrolls it (or an admin does)`,
          },
        },
        403,
      );
    }
    c.set('operator', operator);
    await next();
    return;
  };
}

/** Refuse with 403 naming the role needed when the operator's role ranks below `role`. */
export function requireRole(role: OperatorRole): MiddlewareHandler<ServeEnv> {
  return async (c, next) => {
    const op = c.get('operator');
    if (RANK[op.role] < RANK[role]) {
      const needs = role === 'admin' ? 'admin' : `${role} or admin`;
      return c.json({ error: { code: 'forbidden', message: `operator ${op.name} has role ${op.role}; this action needs role ${needs}` } }, 403);
    }
    await next();
    return;
  };
}

/** The one request an operator without TOTP may make under `requireTotp`: enrolling their own. */
function isTotpEnrollment(method: string, path: string, name: string): boolean {
  if (method !== 'POST') return false;
  // The name as sent, raw or percent-encoded (names may hold '@').
  return path.endsWith(`/operators/${name}/totp`) || path.endsWith(`/operators/${encodeURIComponent(name)}/totp`);
}
