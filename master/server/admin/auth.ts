import type { Context, MiddlewareHandler } from 'hono';
import type { ServeEnv } from '../../../src/serve/env.js';
import type { LoginLimiter } from '../../admin/login-limit.js';
import type { MasterDb } from '../../db/database.js';
import {
  checkOperatorToken,
  expiredTokenMessage,
  getOperator,
  type OperatorRole,
} from '../../db/operators.js';
import type { AddressOf } from '../client-address.js';

/** Wrong bearer tokens counted per source address, with the limiter of the dashboard logins. */
export interface TokenGuard {
  limiter: LoginLimiter;
  addressOf: AddressOf;
}

/** What each role may do: viewer reads, publisher also publishes and unpublishes, admin does everything. */
const RANK: Record<OperatorRole, number> = { viewer: 0, publisher: 1, admin: 2 };

/**
 * `Authorization: Bearer <operator token>` on every admin route. The token is looked up by its hash
 * (no stored secret is compared with the presented one); a missing or unknown token is 401, an expired
 * one too, saying when it expired. With `requireTotp` (master.json) an operator without TOTP may only
 * enroll it for themselves (POST .../operators/NAME/totp); everything else is 403 until then.
 * With a guard, an address that sent too many wrong tokens is refused with 429 before its token is
 * looked at, as a dashboard login is: blocks guessing tokens (or probing stolen ones) at full speed.
 */
export function operatorAuth(
  db: MasterDb,
  opts: { requireTotp?: () => boolean; guard?: TokenGuard } = {},
): MiddlewareHandler<ServeEnv> {
  const guard = opts.guard;
  return async (c, next) => {
    const address = guard?.addressOf(c);
    const limited = guard && tokenLimited(c, guard);
    if (limited) return limited;
    const header = c.req.header('authorization') ?? '';
    const m = /^Bearer ([^\s]+)$/i.exec(header.trim());
    const refuse = (message: string) =>
      c.json(
        {
          error: {
            code: 'unauthorized',
            message,
            hint: 'send Authorization: Bearer <token> (depotsync master operator add prints one)',
          },
        },
        401,
        {
          'www-authenticate': 'Bearer realm="depotsync"',
        },
      );
    if (!m) return refuse('the operator API needs an operator bearer token');
    const checked = await checkOperatorToken(db, m[1] as string);
    if (!checked.ok && checked.reason === 'expired')
      return refuse(expiredTokenMessage(checked.name, checked.expiredAt));
    if (!checked.ok) {
      if (guard && address !== undefined) guard.limiter.fail(address);
      return refuse('operator token is not valid (unknown, removed or disabled)');
    }
    const operator = checked.operator;
    const enrollOnly = opts.requireTotp?.() && !(await getOperator(db, operator.name))?.hasTotp;
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

/** The 429 answer when the request's address sent too many wrong tokens, else undefined. */
export function tokenLimited(c: Context<ServeEnv>, guard: TokenGuard): Response | undefined {
  const address = guard.addressOf(c);
  const wait = guard.limiter.retryAfterMs(address);
  if (wait <= 0) return undefined;
  const seconds = Math.max(1, Math.ceil(wait / 1000));
  return c.json(
    {
      error: {
        code: 'rate-limited',
        message: `too many wrong operator tokens from ${address}; try again in ${seconds} s`,
        hint: 'check the token; a correct one is refused too until then',
      },
    },
    429,
    { 'retry-after': String(seconds) },
  );
}

/** Refuse with 403 naming the role needed when the operator's role ranks below `role`. */
export function requireRole(role: OperatorRole): MiddlewareHandler<ServeEnv> {
  return async (c, next) => {
    const op = c.get('operator');
    if (RANK[op.role] < RANK[role]) {
      const needs = role === 'admin' ? 'admin' : `${role} or admin`;
      return c.json(
        {
          error: {
            code: 'forbidden',
            message: `operator ${op.name} has role ${op.role}; this action needs role ${needs}`,
          },
        },
        403,
      );
    }
    await next();
    return;
  };
}

/** The one request an operator without TOTP may make under `requireTotp`: enrolling their own. */
function isTotpEnrollment(method: string, path: string, name: string): boolean {
  if (method !== 'POST') return false;
  // The name as sent, raw or percent-encoded (names may hold '@').
  return (
    path.endsWith(`/operators/${name}/totp`) || path.endsWith(`/operators/${encodeURIComponent(name)}/totp`)
  );
}
