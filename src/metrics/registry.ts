import { timingSafeEqual, createHash } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { Registry } from 'prom-client';

/**
 * Prometheus exposition shared by the master and the depots. Each app has its own
 * registry (tests run many apps in one process); counters that the depot's sync engine feeds live in one
 * registry per process (src/metrics/depot.ts). `/metrics` is bearer-token protected: the caller decides
 * which tokens are valid through `check`.
 */
export function newRegistry(): Registry {
  return new Registry();
}

/** `GET /metrics`: 401 without an accepted bearer token, else the text exposition of every registry. */
export function metricsHandler(
  registries: () => Registry[],
  check: (token: string) => boolean | Promise<boolean>,
) {
  return async (c: Context): Promise<Response> => {
    const m = /^Bearer ([^\s]+)$/i.exec((c.req.header('authorization') ?? '').trim());
    if (!m || !(await check(m[1] as string))) {
      return c.json(
        {
          error: {
            code: 'unauthorized',
            message: '/metrics needs a bearer token',
            hint: 'send Authorization: Bearer <token> (see the README: metrics)',
          },
        },
        401,
        {
          'www-authenticate': 'Bearer realm="depotsync-metrics"',
        },
      );
    }
    const regs = registries();
    const parts = await Promise.all(regs.map((r) => r.metrics()));
    return c.body(parts.join('\n'), 200, {
      'content-type': regs[0]?.contentType ?? 'text/plain; version=0.0.4; charset=utf-8',
      'cache-control': 'no-store',
    });
  };
}

/**
 * Compare a presented token with the expected one in constant time (threat: recovering the token byte by
 * byte from response timing). Both sides are hashed first so lengths never leak either.
 */
export function tokenEquals(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export type { MiddlewareHandler };
