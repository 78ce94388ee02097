import { NotSignerError } from '../ha/signer.js';
import { Hono, type MiddlewareHandler } from 'hono';
import type { ServeEnv } from '../../src/serve/env.js';
import { errorHandler } from '../../src/serve/http-errors.js';
import { hsts } from '../../src/serve/hsts.js';
import { mutualTls } from '../../src/serve/mtls.js';
import { eventRoutes, type EventHub } from '../../src/serve/events.js';
import { publicReadRoutes, readRoutes, type ReadApiOptions } from '../../src/serve/read-api.js';
import type { MasterContext } from '../context.js';
import { currentGeneration } from '../db/catalog.js';
import { authenticateOperator } from '../db/operators.js';
import { dashboardRoutes } from '../admin/dashboard/routes.js';
import { AdminService } from '../admin/service.js';
import { countRequests } from '../../src/metrics/http.js';
import { metricsHandler } from '../../src/metrics/registry.js';
import { tokenLimited } from './admin/auth.js';
import { adminRoutes } from './admin/routes.js';
import { masterAuthorize, touchLastSeen } from './authorize.js';
import { certificateAdopter } from '../backup/adopt.js';
import { readRestoreRecord } from '../backup/epoch.js';
import { rateLimited, socketAddress, type AddressOf } from './client-address.js';
import { enrollRoutes } from './enroll.js';
import { masterEventHub } from './events.js';
import { revocationListVersionReader } from '../revocations.js';
import { RateLimiter } from './rate-limit.js';
import { masterReadSource } from './source.js';
import { statusRoutes } from './status.js';
import { renewRoutes } from './renew.js';

/**
 * How often a machine's last-seen time is written: every 5 minutes at most. Longer than the depots'
 * one-minute status interval on purpose, so a report is not followed by a second commit (an fsync) for
 * the touch; the status report itself records its own time.
 */
const LAST_SEEN_INTERVAL_MS = 5 * 60_000;

export interface MasterAppDeps {
  ctx: MasterContext;
  /** Clock for certificate and record expiry (default: the database clock). */
  now?: () => Date;
  /** Milliseconds clock of the rate limiters and the last-seen throttle (default: derived from `now`). */
  clockMs?: () => number;
  /** Source address of a request (default: the TCP peer). Tests inject one. */
  addressOf?: AddressOf;
  readOptions?: Partial<ReadApiOptions>;
  /** Record a machine's last-seen time at most this often. Default 5 minutes (LAST_SEEN_INTERVAL_MS). */
  touchIntervalMs?: number;
  /** Status model, dashboard, alerts and metrics (master/admin); made here when not given. */
  adminService?: AdminService;
  /**
   * The `GET /v1/events` streams ("distribute now"); made here when not given
   * (serve.ts passes one it closes).
   */
  events?: EventHub;
}

/**
 * The master's HTTP app (hono factory: tests call `app.request()`; serve.ts serves it over HTTPS).
 * Order matters: it is the security design (docs/http.md, "Authentication"):
 *   1. public: `/healthz`, root metadata (bootstrap from the pinned fingerprint), enrollment (rate-limited
 *      per source address);
 *   2. operator API `/v1/admin/*`: bearer token with a role (operators have no machine certificate);
 *      the dashboard `/dashboard/*` (session cookie from an operator login) and `/metrics` (operator token);
 *   3. everything else: the mutual-TLS gate FIRST, checked against the machine table on every request,
 *      then the read API and status reports.
 */
export function createMasterApp(deps: MasterAppDeps): Hono<ServeEnv> {
  const { ctx } = deps;
  const log = ctx.log.child({ component: 'master.serve' });
  const now = deps.now ?? ctx.db.now;
  const clockMs = deps.clockMs ?? (() => now().getTime());
  const addressOf = deps.addressOf ?? socketAddress;
  const source = masterReadSource(ctx);
  const enrollLimiter = new RateLimiter({ perMinute: ctx.config.enrollPerAddressPerMinute, clockMs });
  const statusLimiter = new RateLimiter({ perMinute: ctx.config.statusReportsPerMachinePerMinute, clockMs });

  const admin = deps.adminService ?? new AdminService({ ctx, now, clockMs });
  const onServed = deps.readOptions?.onServed;
  const readOptions: Partial<ReadApiOptions> = {
    hotChunkBytes: ctx.config.hotChunkBytes,
    batchMemoryBytes: ctx.config.batchMemoryBytes,
    ...deps.readOptions,
    onServed: (kind, bytes, plainBytes) => {
      admin.metrics.servedBytes.inc({ kind }, bytes);
      if (kind === 'chunk') {
        admin.metrics.servedChunks.inc();
        admin.metrics.servedChunkPlainBytes.inc(plainBytes ?? bytes);
      }
      onServed?.(kind, bytes, plainBytes);
    },
  };

  const app = new Hono<ServeEnv>();
  const onError = errorHandler(log);
  // Another master signs: 503 with Retry-After and the signer's name, so a client retries or goes there.
  app.onError((err, c) => {
    if (err instanceof NotSignerError) {
      c.header('Retry-After', String(err.retryAfterSeconds));
      return c.json(
        { error: { code: 'not-signer', message: err.message, hint: err.hint, signer: err.signer } },
        503,
      );
    }
    return onError(err, c);
  });
  app.notFound((c) =>
    c.json({ error: { code: 'not-found', message: `no route ${c.req.method} ${c.req.path}` } }, 404),
  );
  app.use('*', countRequests(admin.metrics.http));
  app.use('*', hsts());

  // 1. Public.
  app.get('/healthz', async (c) =>
    c.json({
      status: 'ok',
      role: 'master',
      name: ctx.config.name,
      generation: await currentGeneration(ctx.db),
    }),
  );
  app.route('/', publicReadRoutes(source));
  // '/v1/enroll/*' matches '/v1/enroll' itself too: one token per request.
  app.use('/v1/enroll/*', rateLimited(enrollLimiter, addressOf, 'enrollment requests'));
  app.route('/', enrollRoutes(ctx, addressOf));

  // 2. Operators: the API (bearer token), the dashboard (session cookie), metrics (bearer token).
  const tokenGuard = { limiter: admin.addressLimiter, addressOf };
  app.get('/metrics', (c) => {
    const limited = tokenLimited(c, tokenGuard);
    if (limited) return limited;
    const known = async (token: string) =>
      (await authenticateOperator(ctx.db, token)) !== null || (tokenGuard.limiter.fail(addressOf(c)), false);
    return metricsHandler(() => [admin.metrics.registry], known)(c);
  });
  app.route('/', dashboardRoutes(ctx, admin, addressOf) as unknown as Hono<ServeEnv>);
  app.route('/v1/admin', adminRoutes(ctx, admin, addressOf, tokenGuard));

  // 3. Machines: mutual TLS first, on every request (not once per connection).
  const restored = readRestoreRecord(ctx.layout.dir);
  const authorize = masterAuthorize(
    ctx.db,
    now,
    restored ? certificateAdopter(ctx.db, restored, log) : undefined,
  );
  const gate = mutualTls({ authorize, log, now });
  app.use('*', except(isPublicOrAdmin, gate));
  app.use(
    '*',
    except(
      isPublicOrAdmin,
      touchLastSeen(ctx.db, { intervalMs: deps.touchIntervalMs ?? LAST_SEEN_INTERVAL_MS, clockMs, log }),
    ),
  );
  app.route('/', readRoutes(source, log, readOptions));
  const events =
    deps.events ??
    masterEventHub(ctx.db, ctx.log.child({ component: 'master.events' }), {
      revocations: revocationListVersionReader(ctx.layout),
    });
  app.route('/', eventRoutes(events, { authorize, now }));
  app.route('/', statusRoutes(ctx.db, statusLimiter));
  app.route('/', renewRoutes(ctx, { clockMs }));
  return app;
}

/** Paths served without a machine certificate (their own routes answer, or 404). */
function isPublicOrAdmin(path: string): boolean {
  return (
    path === '/healthz' ||
    path === '/v1/enroll' ||
    path.startsWith('/v1/enroll/') ||
    path === '/v1/admin' ||
    path.startsWith('/v1/admin/') ||
    path === '/metrics' ||
    path === '/dashboard' ||
    path.startsWith('/dashboard/')
  );
}

function except(
  skip: (path: string) => boolean,
  mw: MiddlewareHandler<ServeEnv>,
): MiddlewareHandler<ServeEnv> {
  return async (c, next) => (skip(c.req.path) ? next() : mw(c, next));
}
