import { timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import { DepotsyncError } from '../../../src/errors.js';
import type { ServeEnv } from '../../../src/serve/env.js';
import { readBodyCapped } from '../../../src/serve/http-errors.js';
import type { OperatorRole } from '../../db/operators.js';

/** HTTP details of the dashboard: its environment, headers, cookies, form bodies, the origin check. */
export type DashEnv = {
  Bindings: ServeEnv['Bindings'];
  Variables: ServeEnv['Variables'] & {
    session: { id: number; secret: string; operator: string; role: OperatorRole };
  };
};

export const SESSION_COOKIE = 'depotsync_session';
export const LOGIN_COOKIE = 'depotsync_login';
const FORM_MAX_BYTES = 8 * 1024;

/**
 * Headers on every dashboard answer. The Content Security Policy forbids inline script, inline style,
 * plugins, framing and foreign origins: the page's only script is /dashboard/app.js. Threats: XSS through a
 * value that escaped escaping (it could not run), clickjacking (no framing), leaking the URL to other
 * sites (referrer only to ourselves).
 */
export function securityHeaders(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    c.header(
      'content-security-policy',
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    c.header('x-content-type-options', 'nosniff');
    c.header('x-frame-options', 'DENY');
    // same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on form
    // posts, defeating the origin check.
    c.header('referrer-policy', 'same-origin');
    if (!c.res.headers.has('cache-control')) c.header('cache-control', 'no-store');
  };
}

/** `__Host-` cookies: Secure, Path=/, no Domain: no other host (or plain-HTTP page) can set or read them. */
export function setSecretCookie(c: Context, name: string, value: string): void {
  setCookie(c, name, value, { path: '/', secure: true, httpOnly: true, sameSite: 'Strict', prefix: 'host' });
}

export function readSecretCookie(c: Context, name: string): string | undefined {
  return getCookie(c, name, 'host');
}

export function clearSecretCookie(c: Context, name: string): void {
  deleteCookie(c, name, { path: '/', secure: true, prefix: 'host' });
}

/** A form body (application/x-www-form-urlencoded), size-capped while streaming. */
export async function readForm(c: Context, what: string): Promise<URLSearchParams> {
  const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new DepotsyncError(
      'bad-input',
      `${what}: expected a form (application/x-www-form-urlencoded), got ${JSON.stringify(type)}`,
    );
  }
  return new URLSearchParams((await readBodyCapped(c, FORM_MAX_BYTES, what)).toString('utf8'));
}

/**
 * A state-changing request must come from our own pages. Browsers send `Origin` on POST; when present it
 * must be this server's origin (threat: cross-site request forgery; the CSRF token is the main defence,
 * this one also covers the login form before there is a session).
 */
export function sameOrigin(c: Context): boolean {
  const origin = c.req.header('origin');
  if (origin === undefined) return true;
  const host = c.req.header('host');
  return host !== undefined && (origin === `https://${host}` || origin === `http://${host}`);
}

export function equalSecrets(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
