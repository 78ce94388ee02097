import { dirname, join } from 'node:path';
import { Hono } from 'hono';
import type { Logger } from '../../src/log.js';
import { errorHandler } from '../../src/serve/http-errors.js';
import { hsts } from '../../src/serve/hsts.js';
import { mutualTls, type AuthorizeMachine } from '../../src/serve/mtls.js';
import { eventRoutes, type EventHub } from '../../src/serve/events.js';
import type { ChunkReader } from '../../src/serve/chunk-reader.js';
import { publicReadRoutes, readRoutes, type ReadApiOptions } from '../../src/serve/read-api.js';
import type { ServeEnv } from '../../src/serve/env.js';
import { depotCounters } from '../../src/metrics/depot.js';
import { depotGauges } from '../../src/metrics/depot-gauges.js';
import { countRequests, httpMetrics } from '../../src/metrics/http.js';
import { metricsHandler, newRegistry, tokenEquals } from '../../src/metrics/registry.js';
import { loadOrCreateMetricsToken, METRICS_TOKEN_FILE } from '../../src/metrics/token-file.js';
import type { DepotDb } from '../db/depot-db.js';
import { depotLayout } from '../layout.js';
import { servedWindowBytes } from '../offline/window.js';
import { KV } from '../sync/status-report.js';
import type { RevocationGate } from './revocation-gate.js';
import { depotReadSource } from './source.js';
import { depotEventHub } from './events.js';

export interface DepotAppDeps {
  db: DepotDb;
  store: ChunkReader;
  revocations: RevocationGate;
  logger: Logger;
  /** The depot's name, shown by /healthz. */
  name?: string;
  now?: () => Date;
  readOptions?: Partial<ReadApiOptions>;
  /**
   * Bearer token of `GET /metrics`. Default: the file `D/metrics.token` beside the database, made on
   * first start (src/metrics/token-file.ts). `false`: no /metrics route.
   */
  metricsToken?: string | false;
  /** The `GET /v1/events` streams for child depots ("distribute now"); made here when not given. */
  events?: EventHub;
}

/**
 * Who may read from this depot: a certificate that chains to the master's CA (checked by the TLS layer;
 * `peerIdentity` kind 'cert', in date), issued to an agent or a child depot, and not revoked by the
 * signed list the last sync brought. Blocks revoked machines at every depot, not only at the master.
 */
export function depotAuthorize(revocations: RevocationGate): AuthorizeMachine {
  return (peer) => {
    if (peer.role !== 'agent' && peer.role !== 'depot') {
      return {
        ok: false,
        status: 403,
        code: 'wrong-role',
        reason: `certificate of ${peer.commonName} is not an agent or depot certificate`,
      };
    }
    if (revocations.isRevoked(peer.serial)) {
      return {
        ok: false,
        status: 403,
        code: 'revoked',
        reason: `certificate ${peer.serial} of ${peer.commonName} was revoked by the master`,
      };
    }
    return { ok: true, machine: { name: peer.commonName, role: peer.role, serial: peer.serial } };
  };
}

/** The depot's HTTP app (hono factory: tests call `app.request()`; server.ts serves it over HTTPS). */
export function createDepotApp(deps: DepotAppDeps): Hono<ServeEnv> {
  const log = deps.logger.child({ component: 'depot.serve' });
  const source = depotReadSource(deps.db, deps.store);
  const app = new Hono<ServeEnv>();
  app.onError(errorHandler(log));
  app.notFound((c) =>
    c.json({ error: { code: 'not-found', message: `no route ${c.req.method} ${c.req.path}` } }, 404),
  );

  // Metrics: every request counted, /metrics behind its own bearer token.
  const counters = depotCounters();
  const registry = newRegistry();
  const http = httpMetrics(registry);
  const dir = dirname(deps.db.path);
  depotGauges(registry, {
    servedGeneration: () => deps.db.served()?.generation ?? null,
    targetGeneration: () => Number(deps.db.getKv(KV.targetGeneration) ?? '') || null,
    bytesRemaining: () => Number(deps.db.getKv(KV.bytesRemaining) ?? '') || 0,
    scrubFailed: () => Number(deps.db.getKv(KV.scrubFailed) ?? '') || 0,
    certPath: depotLayout(dir).cert,
  });
  app.use('*', countRequests(http));
  app.use('*', hsts());
  const metricsToken =
    deps.metricsToken ??
    (deps.db.path === ':memory:' ? false : loadOrCreateMetricsToken(join(dir, METRICS_TOKEN_FILE)));
  if (metricsToken !== false)
    app.get(
      '/metrics',
      metricsHandler(
        () => [registry, counters.registry],
        (t) => tokenEquals(t, metricsToken),
      ),
    );
  const onServed = deps.readOptions?.onServed;
  const readOptions: Partial<ReadApiOptions> = {
    ...deps.readOptions,
    onServed: (kind, bytes, plainBytes) => {
      counters.servedBytes.inc({ kind }, bytes);
      if (kind === 'chunk') {
        counters.servedChunks.inc();
        counters.servedChunkPlainBytes.inc(plainBytes ?? bytes);
      }
      onServed?.(kind, bytes, plainBytes);
    },
  };

  // Public: health, and root metadata (agents bootstrap from their pinned fingerprint).
  app.get('/healthz', (c) => {
    const served = deps.db.served();
    return c.json({ status: 'ok', role: 'depot', name: deps.name, generation: served?.generation ?? null });
  });
  app.route('/', publicReadRoutes(source));

  // Everything else: mutual TLS first.
  const authorize = depotAuthorize(deps.revocations);
  app.use('*', mutualTls({ authorize, log, ...(deps.now ? { now: deps.now } : {}) }));
  app.route(
    '/',
    eventRoutes(deps.events ?? depotEventHub(deps.db, deps.logger.child({ component: 'depot.events' })), {
      authorize,
      ...(deps.now ? { now: deps.now } : {}),
    }),
  );
  // The master-signed validity window of a generation imported from an offline bundle.
  // Agents of THIS depot use it when its timestamp expired (agent/fetch/validity-window.ts).
  app.get('/v1/validity-window', async (c) => {
    const bytes = deps.db.path === ':memory:' ? undefined : await servedWindowBytes(deps.db, dir);
    if (!bytes) {
      return c.json(
        {
          error: {
            code: 'not-found',
            message: `depot${deps.name ? ` ${deps.name}` : ''} serves no validity window: its served generation did not come from an offline bundle`,
          },
        },
        404,
      );
    }
    return c.body(new Uint8Array(bytes), 200, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
    });
  });
  app.route('/', readRoutes(source, log, readOptions));
  return app;
}
