import type { Context, MiddlewareHandler } from 'hono';
import type { ServeEnv } from '../../src/serve/env.js';
import type { RateLimiter } from './rate-limit.js';

/** The source address of a request (injectable: tests run without sockets). */
export type AddressOf = (c: Context<ServeEnv>) => string;

/** The peer address of the TCP connection. Forwarded-for headers are not trusted: anyone can send them. */
export const socketAddress: AddressOf = (c) => c.env?.incoming?.socket?.remoteAddress ?? 'unknown';

/** Refuse with 429 (and Retry-After) once `key(c)` has spent its budget. */
export function rateLimited(
  limiter: RateLimiter,
  key: (c: Context<ServeEnv>) => string,
  what: string,
): MiddlewareHandler<ServeEnv> {
  return async (c, next) => {
    const k = key(c);
    const verdict = limiter.take(k);
    if (!verdict.ok) {
      const seconds = Math.max(1, Math.ceil(verdict.retryAfterMs / 1000));
      return c.json(
        {
          error: {
            code: 'rate-limited',
            message: `too many ${what} from ${k}; try again in ${seconds} s`,
            hint: 'wait before retrying',
          },
        },
        429,
        { 'retry-after': String(seconds) },
      );
    }
    await next();
  };
}
