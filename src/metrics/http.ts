import type { MiddlewareHandler } from 'hono';
import { Counter, Histogram, type Registry } from 'prom-client';

/**
 * HTTP requests by route and status. The route label is one of a fixed set of patterns (never the raw
 * path): a client requesting random paths cannot grow the number of series without bound.
 */
const ROUTES: [RegExp, string][] = [
  [/^\/v1\/chunks\/batch$/, '/v1/chunks/batch'],
  [/^\/v1\/chunks\/[^/]+$/, '/v1/chunks/{id}'],
  [/^\/v1\/metadata\/[^/]+$/, '/v1/metadata/{file}'],
  [/^\/v1\/targets\/[^/]+$/, '/v1/targets/{file}'],
  [/^\/v1\/targets-delta\/[^/]+\/[^/]+$/, '/v1/targets-delta/{base}/{file}'],
  [/^\/v1\/revocations\.json$/, '/v1/revocations.json'],
  [/^\/v1\/enroll(\/[^/]+)?$/, '/v1/enroll'],
  [/^\/v1\/renew$/, '/v1/renew'],
  [/^\/v1\/status$/, '/v1/status'],
  [/^\/v1\/admin\/publish$/, '/v1/admin/publish'],
  [/^\/v1\/admin\/status$/, '/v1/admin/status'],
  [/^\/v1\/admin(\/.*)?$/, '/v1/admin/*'],
  [/^\/dashboard\/events$/, '/dashboard/events'],
  [/^\/dashboard(\/.*)?$/, '/dashboard'],
  [/^\/metrics$/, '/metrics'],
  [/^\/healthz$/, '/healthz'],
];

export function routeLabel(path: string): string {
  for (const [re, label] of ROUTES) if (re.test(path)) return label;
  return 'other';
}

export interface HttpMetrics {
  requests: Counter<'route' | 'method' | 'status'>;
  duration: Histogram<'route'>;
}

export function httpMetrics(registry: Registry): HttpMetrics {
  return {
    requests: new Counter({
      name: 'depotsync_http_requests_total',
      help: 'HTTP requests answered, by route pattern, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'depotsync_http_request_duration_seconds',
      help: 'Time to the response headers, by route pattern (streamed bodies continue after)',
      labelNames: ['route'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    }),
  };
}

/** Count every request (also the refused ones: the middleware goes first and sees the final status). */
export function countRequests(m: HttpMetrics): MiddlewareHandler {
  return async (c, next) => {
    const t0 = performance.now();
    try {
      await next();
    } finally {
      const route = routeLabel(c.req.path);
      m.requests.inc({ route, method: c.req.method, status: String(c.res.status) });
      m.duration.observe({ route }, (performance.now() - t0) / 1000);
    }
  };
}
