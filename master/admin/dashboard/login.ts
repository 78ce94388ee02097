import { randomBytes } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { ServeEnv } from '../../../src/serve/env.js';
import type { MasterContext } from '../../context.js';
import { recordAudit } from '../../db/audit.js';
import { isDepotsyncError } from '../../../src/errors.js';
import {
  checkOperatorToken,
  expiredTokenMessage,
  forgetDirectoryOperator,
  getOperator,
  recordDirectoryOperator,
} from '../../db/operators.js';
import type { AddressOf } from '../../server/client-address.js';
import type { AdminService } from '../service.js';
import { createSession, csrfOk, endSession, resolveSession } from '../sessions.js';
import { totpRequired, verifyTotp } from '../totp.js';
import {
  clearSecretCookie,
  equalSecrets,
  LOGIN_COOKIE,
  readForm,
  readSecretCookie,
  sameOrigin,
  SESSION_COOKIE,
  setSecretCookie,
  type DashEnv,
} from './http.js';
import { loginPage } from './page.js';

/**
 * Login and logout. The operator gives their name, their token (the bearer token `master operator add`
 * printed) and, when enabled, a TOTP code. Checked in this order, each with the threat it blocks:
 *   1. login CSRF: the form's hidden token must equal the `__Host-` login cookie (a foreign site cannot
 *      log the operator's browser into the attacker's session); a foreign Origin is refused;
 *   2. rate limits: an address with too many recent failures, or an operator with too many recent
 *      second-factor failures, is refused before any check (guessing);
 *   3. the token, looked up by hash (no timing oracle), must belong to the named operator;
 *   4. the TOTP code (±1 step, never the same step twice);
 * then a new session (its secret only in an HttpOnly, Secure, SameSite=Strict `__Host-` cookie).
 * With `directory.ldap` in master.json, a name that is not a local operator is checked against the
 * directory instead of step 3 (the token field holds the directory password; the role comes from the
 * user's groups at each login). Local operators never touch the directory, so they log in while it is
 * down; the TOTP steps apply to both.
 * The wrong-token message never says whether the operator exists. Every outcome is in the audit log
 * (refusals by the limiter at most once a minute per key, so a flood cannot flood the log).
 */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const AUDIT_LIMITED_EVERY_MS = 60_000;

export function loginRoutes(ctx: MasterContext, admin: AdminService, addressOf: AddressOf): Hono<DashEnv> {
  const app = new Hono<DashEnv>();
  const name = ctx.config.name;
  const limitedAudited = new Map<string, number>();
  const log = ctx.log.child({ component: 'master.login' });

  const form = (
    c: Context<DashEnv>,
    status: 200 | 400 | 401 | 403 | 429 | 503,
    message?: string,
    operator?: string,
  ) => {
    const token = randomBytes(24).toString('base64url');
    setSecretCookie(c, LOGIN_COOKIE, token);
    return c.html(
      loginPage(name, {
        csrf: token,
        ...(message ? { message } : {}),
        ...(operator ? { name: operator } : {}),
        directory: admin.directory !== undefined,
      }),
      status,
    );
  };

  app.get('/dashboard/login', (c) => {
    const ended = c.req.query('ended') !== undefined;
    return form(
      c,
      200,
      ended
        ? 'Your session ended (logged out, idle for too long, or past its lifetime). Log in again.'
        : undefined,
    );
  });

  app.post('/dashboard/login', async (c) => {
    const address = addressOf(c as unknown as Context<ServeEnv>);
    const audit = async (action: string, target: string, detail: Record<string, unknown> = {}) =>
      await recordAudit(ctx.db, { actor: 'dashboard', action, target, detail, address });
    const body = await readForm(c, 'login form').catch(() => undefined);
    const loginCookie = readSecretCookie(c, LOGIN_COOKIE);
    if (!body || !sameOrigin(c) || !loginCookie || !equalSecrets(loginCookie, body.get('_csrf') ?? '')) {
      return form(c, 403, 'The login form expired or did not come from this page. Try again.');
    }
    const operator = body.get('operator') ?? '';
    const token = body.get('token') ?? '';
    const code = (body.get('code') ?? '').trim();
    if (!NAME.test(operator)) return form(c, 400, 'Give your operator name.');
    const opKey = `operator:${operator}`;

    const byAddress = admin.addressLimiter.retryAfterMs(address);
    const wait = byAddress || admin.operatorLimiter.retryAfterMs(opKey);
    if (wait > 0) {
      admin.metrics.loginAttempts.inc({ outcome: 'limited' });
      const key = byAddress ? `address:${address}` : opKey;
      const nowMs = admin.now().getTime();
      if (nowMs - (limitedAudited.get(key) ?? -Infinity) >= AUDIT_LIMITED_EVERY_MS) {
        limitedAudited.delete(key);
        limitedAudited.set(key, nowMs);
        if (limitedAudited.size > 10_000) limitedAudited.delete(limitedAudited.keys().next().value as string);
        await audit('login.limited', operator, { limitedBy: key });
      }
      c.header('retry-after', String(Math.ceil(wait / 1000)));
      return form(
        c,
        429,
        `Too many failed logins; try again in ${Math.ceil(wait / 60_000)} minute(s).`,
        operator,
      );
    }

    const local = await getOperator(ctx.db, operator);
    let source: Record<string, unknown> = {};
    if (admin.directory && (!local || local.directoryDn !== null)) {
      // Directory operator: the password goes to the directory only (never compared here).
      const outcome = await admin.directory.authenticate(operator, token).catch((e: unknown) => e as Error);
      if (outcome instanceof Error) {
        admin.metrics.loginAttempts.inc({ outcome: 'failed' });
        const reason = outcome.message;
        if (isDepotsyncError(outcome, 'unauthorized')) {
          admin.addressLimiter.fail(address);
          admin.operatorLimiter.fail(opKey);
          await audit('login.failed', operator, { reason, source: 'directory' });
          return form(c, 401, 'Operator name or password is wrong.', operator);
        }
        if (isDepotsyncError(outcome, 'forbidden')) {
          // No mapped group any more: the role is gone, and so are the operator's sessions.
          const removed = await forgetDirectoryOperator(ctx.db, operator);
          await audit('login.failed', operator, { reason, source: 'directory', removed });
          return form(
            c,
            403,
            `${operator} is in none of the directory groups that give a role on this master; ask an admin.`,
            operator,
          );
        }
        const unreachable = isDepotsyncError(outcome, 'network');
        log[unreachable ? 'warn' : 'error']({ operator, err: reason }, 'directory login failed');
        await audit('login.failed', operator, { reason, source: 'directory' });
        return form(
          c,
          503,
          unreachable
            ? 'The directory cannot be reached, so directory operators cannot log in now (local operators still can). Try again later.'
            : "Directory login is not available: the master's directory settings are wrong (its log says why).",
          operator,
        );
      }
      const op = await recordDirectoryOperator(ctx.db, {
        name: operator,
        dn: outcome.dn,
        role: outcome.role,
      });
      if (op.disabled) {
        admin.metrics.loginAttempts.inc({ outcome: 'failed' });
        await audit('login.failed', operator, { reason: 'operator disabled', source: 'directory' });
        return form(c, 403, `Operator ${operator} is disabled on this master; ask an admin.`, operator);
      }
      source = { source: 'directory', groups: outcome.groups };
    } else {
      const checked = await checkOperatorToken(ctx.db, token);
      // The token was right but has expired: saying so reveals nothing its holder does not know.
      if (!checked.ok && checked.reason === 'expired' && checked.name === operator) {
        admin.metrics.loginAttempts.inc({ outcome: 'failed' });
        await audit('login.failed', operator, { reason: 'token expired', expiredAt: checked.expiredAt });
        return form(c, 401, `The ${expiredTokenMessage(checked.name, checked.expiredAt)}.`, operator);
      }
      const who = checked.ok ? checked.operator : null;
      if (!who || who.name !== operator) {
        admin.addressLimiter.fail(address);
        admin.metrics.loginAttempts.inc({ outcome: 'failed' });
        await audit('login.failed', operator, { reason: 'wrong operator name or token' });
        return form(c, 401, 'Operator name or token is wrong.', operator);
      }
    }
    // Policy (master.json requireTotp): no dashboard without a second factor; enrollment is over the API.
    if (ctx.config.requireTotp && !(await totpRequired(ctx.db, operator))) {
      admin.metrics.loginAttempts.inc({ outcome: 'failed' });
      await audit('login.failed', operator, { reason: 'TOTP required by policy, none enrolled' });
      return form(
        c,
        403,
        `This master requires an authenticator (TOTP) for every operator and ${operator} has none. ` +
          (source.source === 'directory'
            ? 'Directory operators have no API token to enroll one with: ask an admin (docs/operations.md).'
            : `Enroll one with POST /v1/admin/operators/${operator}/totp and your token (docs/operations.md), or ask an admin.`),
        operator,
      );
    }
    if (
      (await totpRequired(ctx.db, operator)) &&
      !(await verifyTotp(ctx.db, operator, code, admin.now().getTime()))
    ) {
      // The token was right: count against the operator too (guessing the 6-digit code).
      admin.addressLimiter.fail(address);
      admin.operatorLimiter.fail(opKey);
      admin.metrics.loginAttempts.inc({ outcome: 'failed' });
      await audit('login.failed', operator, {
        reason: code ? 'wrong authenticator code' : 'authenticator code missing',
      });
      return form(
        c,
        401,
        code
          ? 'Authenticator code is wrong (or already used).'
          : 'This operator needs an authenticator code.',
        operator,
      );
    }

    const { secret, session } = await createSession(ctx.db, operator, {
      ...admin.sessionTimes,
      address,
      userAgent: c.req.header('user-agent') ?? '',
    });
    admin.metrics.loginAttempts.inc({ outcome: 'ok' });
    await audit('login', operator, {
      session: session.id,
      role: (await getOperator(ctx.db, operator))?.role,
      ...source,
    });
    setSecretCookie(c, SESSION_COOKIE, secret);
    clearSecretCookie(c, LOGIN_COOKIE);
    return c.redirect('/dashboard', 303);
  });

  app.post('/dashboard/logout', async (c) => {
    const secret = readSecretCookie(c, SESSION_COOKIE);
    const r = await resolveSession(ctx.db, secret, { ...admin.sessionTimes, touch: false });
    if (r.ok) {
      const body = await readForm(c, 'logout form').catch(() => undefined);
      // Logout is a state change too: without the CSRF token a foreign page could end sessions at will.
      if (!body || !sameOrigin(c) || !csrfOk(secret!, body.get('_csrf')))
        return c.html(
          '<!doctype html><title>refused</title><p>Refused: missing or wrong security token.</p>',
          403,
        );
      await endSession(ctx.db, r.session.id, r.session.operator, 'logout');
      await recordAudit(ctx.db, {
        actor: r.session.operator,
        action: 'logout',
        target: `session:${r.session.id}`,
        address: addressOf(c as unknown as Context<ServeEnv>),
      });
    }
    clearSecretCookie(c, SESSION_COOKIE);
    return c.redirect('/dashboard/login', 303);
  });
  return app;
}
