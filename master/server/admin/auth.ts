import type { MiddlewareHandler } from 'hono';
import type { ServeEnv } from '../../../src/serve/env.js';
import type { MasterDb } from '../../db/database.js';
import { authenticateOperator, type OperatorRole } from '../../db/operators.js';

/** What each role may do: viewer reads, publisher also publishes and unpublishes, admin does everything. */
const RANK: Record<OperatorRole, number> = { viewer: 0, publisher: 1, admin: 2 };

/**
 * `Authorization: Bearer <operator token>` on every admin route. The token is looked up by its hash
 * (no stored secret is compared with the presented one); a missing or unknown token is 401.
 */
export function operatorAuth(db: MasterDb): MiddlewareHandler<ServeEnv> {
  return async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const m = /^Bearer ([^\s]+)$/i.exec(header.trim());
    const refuse = (message: string) =>
      c.json({ error: { code: 'unauthorized', message, hint: 'send Authorization: Bearer <token> (depotsync master operator add prints one)' } }, 401, {
        'www-authenticate': 'Bearer realm="depotsync"',
      });
    if (!m) return refuse('the operator API needs an operator bearer token');
    const operator = authenticateOperator(db, m[1] as string);
    if (!operator) return refuse('operator token is not valid (unknown, removed or disabled)');
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
