import type { MiddlewareHandler } from 'hono';
import type { ServeEnv } from './env.js';

/** One year, the value browsers' preload lists ask for. */
export const HSTS_VALUE = 'max-age=31536000; includeSubDomains';

/**
 * `Strict-Transport-Security` on every answer (the servers speak HTTPS only): a browser that reached
 * the dashboard once never tries plain HTTP for it again. Threat: an attacker on the path downgrading
 * an operator's next visit (typed address, old bookmark) to HTTP to steal the login.
 */
export function hsts(): MiddlewareHandler<ServeEnv> {
  return async (c, next) => {
    // On the socket's response too: streamed answers (chunk batches) bypass the Response object.
    const outgoing = c.env?.outgoing;
    if (outgoing && !outgoing.headersSent) outgoing.setHeader('strict-transport-security', HSTS_VALUE);
    await next();
    if (!outgoing?.headersSent) c.header('strict-transport-security', HSTS_VALUE);
  };
}
