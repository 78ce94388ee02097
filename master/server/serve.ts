import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { fromSystemError } from '../../src/errors.js';
import { tlsServerOptions } from '../../src/net/tls.js';
import type { MasterContext } from '../context.js';
import { DropboxWatcher, type DropOutcome } from '../dropbox/watcher.js';
import { publish } from '../publish/publish.js';
import { uploadsDir } from './admin/upload.js';
import { AdminService } from '../admin/service.js';
import { createMasterApp, type MasterAppDeps } from './app.js';
import { masterEventHub } from './events.js';
import { revocationListVersionReader } from '../revocations.js';
import type { EventHubOptions } from '../../src/serve/events.js';
import { startRefresher } from './refresher.js';
import { startMasterDeltas, type MasterDeltas } from '../deltas/deltas.js';
import { renewServerCertificateIfDue } from './server-cert.js';
import { currentLease, SignerLease, type Lease } from '../ha/lease.js';
import { fenceByLease, sharedCatalog } from '../ha/signer.js';

export interface MasterServerOptions {
  host: string;
  port: number;
  /** Metadata refresh check interval. Default: a quarter of `timestampRefreshHours`, 1 min to 1 h. */
  refreshIntervalMs?: number;
  /** false: no drop folder watcher. */
  dropbox?: false | { settleMs?: number; usePolling?: boolean; onOutcome?: (o: DropOutcome) => void };
  /** false: no metadata refresher. */
  refresher?: boolean;
  app?: Omit<MasterAppDeps, 'ctx'>;
  /** Settings of the `GET /v1/events` streams (poll and heartbeat intervals, limits); defaults otherwise. */
  events?: Partial<EventHubOptions>;
  /** An operator certificate to serve instead of the internal server certificate (master.json `tls`). */
  listener?: { keyPem: string; certPem: string } | undefined;
  /**
   * Longest time to receive one whole request. Node's default (5 min) would cut a large publish upload;
   * headers must still arrive within `headersTimeout` (60 s), which is what stops slow-header attacks.
   * Default 2 h.
   */
  requestTimeoutMs?: number;
  /** Also run the scheduled backups and maintenance (GC, retention) while signing (`master serve`). */
  schedules?: boolean;
}

export interface MasterServer {
  url: string;
  port: number;
  server: https.Server;
  /** Run a metadata refresh now (tests, `master serve` startup). */
  refreshNow(): Promise<unknown>;
  /** Status model, alerts, dashboard sessions and metrics of this server. */
  admin: AdminService;
  /**
   * Serve an operator certificate (checked by the caller: src/net/listener-cert.ts) instead of the
   * internal server certificate from the next handshake on; undefined goes back to the internal one.
   */
  setListenerCertificate(cert: { keyPem: string; certPem: string } | undefined): void;
  /** Version deltas (master/deltas): `runNow` computes the missing ones. */
  deltas: MasterDeltas;
  /** Whether this master signs now (always on a single master; the lease holder among several). */
  signing(): boolean;
  close(): Promise<void>;
}

/**
 * How long an idle connection stays open. Longer than a depot's shortest report interval (one minute):
 * a depot's HttpClient keeps its connection, so its next report costs no new mutual-TLS handshake (a
 * full handshake costs the master's event loop about 5 ms; a report on an open connection well under
 * one: bench/admin-status.ts). Node's default is 5 s.
 */
export const MACHINE_KEEP_ALIVE_MS = 75_000;

/** Stream bodies with a 1 MiB buffer: the default 64 KiB halves throughput here. */
const HIGH_WATER_MARK_BYTES = 1024 * 1024;

/**
 * `depotsync master serve`: the master app over HTTPS (TLS 1.2+, AEAD only; a client certificate is
 * requested but not required by the TLS layer, so the mutual-TLS middleware can answer 401/403 with the
 * reason), the metadata refresher and the drop folder watcher.
 */
export async function startMasterServer(
  ctx: MasterContext,
  opts: MasterServerOptions,
): Promise<MasterServer> {
  const log = ctx.log.child({ component: 'master.server' });
  const adminService =
    opts.app?.adminService ??
    new AdminService({
      ctx,
      ...(opts.app?.now ? { now: opts.app.now } : {}),
      ...(opts.app?.clockMs ? { clockMs: opts.app.clockMs } : {}),
    });
  const eventsLog = ctx.log.child({ component: 'master.events' });
  const events =
    opts.app?.events ??
    masterEventHub(ctx.db, eventsLog, {
      revocations: revocationListVersionReader(ctx.layout),
      ...opts.events,
    });
  // Version deltas: computed in the background after publishes, served from the cache (master/deltas).
  let signing = false;
  const deltas = startMasterDeltas(ctx, { active: () => signing });
  const app = createMasterApp({
    ctx,
    ...opts.app,
    readOptions: { ...opts.app?.readOptions, zstdDeltas: deltas.source },
    adminService,
    events,
  });
  let listener = opts.listener;
  const serverOptions = {
    ...tlsServerOptions({
      keyPem: listener?.keyPem ?? readFileSync(ctx.layout.serverKey, 'utf8'),
      certPem: listener?.certPem ?? readFileSync(ctx.layout.serverCert, 'utf8'),
      caPem: ctx.ca.certPem,
    }),
    highWaterMark: HIGH_WATER_MARK_BYTES,
    requestTimeout: opts.requestTimeoutMs ?? 2 * 3_600_000,
    keepAliveTimeout: MACHINE_KEEP_ALIVE_MS,
  } as https.ServerOptions;
  // Leftovers of uploads interrupted by a crash.
  await rm(uploadsDir(ctx.layout.dir), { recursive: true, force: true });

  const server = await new Promise<https.Server>((resolve, reject) => {
    const s = serve({
      fetch: app.fetch,
      createServer: https.createServer,
      serverOptions,
      port: opts.port,
      hostname: opts.host,
    }) as https.Server;
    s.once('error', (e) => reject(fromSystemError(e, `master server on ${opts.host}:${opts.port}`)));
    s.once('listening', () => resolve(s));
  });
  server.on('tlsClientError', (e: NodeJS.ErrnoException) =>
    log.debug({ err: e.message, code: e.code }, 'TLS handshake failed'),
  );
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;

  // The server's own certificate: renewed when due, then served to new connections without a restart.
  const now = opts.app?.now ?? (() => new Date());
  // The operator certificate when there is one, else the internal certificate as it is on disk now.
  const serveCurrent = () =>
    server.setSecureContext({
      ...serverOptions,
      key: listener?.keyPem ?? readFileSync(ctx.layout.serverKey, 'utf8'),
      cert: listener?.certPem ?? readFileSync(ctx.layout.serverCert, 'utf8'),
    });
  const checkCertificate = () =>
    renewServerCertificateIfDue(ctx, now())
      .then((renewed) => {
        if (renewed) serveCurrent();
      })
      .catch((e: unknown) =>
        log.error({ err: (e as Error).message }, 'server certificate renewal failed; will retry'),
      );
  await checkCertificate();
  const certTimer = setInterval(() => void checkCertificate(), 3_600_000);
  certTimer.unref();

  const refreshIntervalMs =
    opts.refreshIntervalMs ??
    Math.min(3_600_000, Math.max(60_000, (ctx.config.timestampRefreshHours * 3_600_000) / 4));

  // What only the signer does: re-signing (refresher), the drop folder, scheduled maintenance.
  let refresher: ReturnType<typeof startRefresher> | undefined;
  let dropbox: DropboxWatcher | undefined;
  let schedules: { stop(): Promise<void> }[] = [];
  // `takeover`: this master just gained the signer lease from another: it signs a new timestamp at once,
  // so depots and agents see a live signer within seconds rather than at the next publish.
  const startDuties = async (takeover = false) => {
    signing = true;
    if (ctx.config.deltaVersions > 0) void deltas.runNow();
    if (opts.refresher !== false) {
      refresher = startRefresher(ctx, {
        intervalMs: refreshIntervalMs,
        ...(opts.app?.now ? { now: opts.app.now } : {}),
      });
      void refresher.runNow({ newTimestamp: takeover });
    }
    if (opts.dropbox !== false) {
      const d = opts.dropbox ?? {};
      dropbox = new DropboxWatcher({
        dropbox: ctx.layout.dropbox,
        rejected: ctx.layout.dropboxRejected,
        settleMs: d.settleMs ?? ctx.config.dropboxSettleMs,
        log: ctx.log,
        publish: (name, version, path) => publish(ctx, { name, version, path, actor: 'dropbox' }),
        ...(d.usePolling ? { usePolling: true } : {}),
        ...(d.onOutcome ? { onOutcome: d.onOutcome } : {}),
      });
      await dropbox.start();
    }
    if (opts.schedules) {
      const backups = (await import('../backup/schedule.js')).startBackupSchedule(ctx);
      const maintenance = (await import('../maintenance/schedule.js')).startMaintenanceSchedule(ctx);
      schedules = [];
      if (backups) schedules.push(backups);
      if (maintenance) schedules.push(maintenance);
    }
  };
  const stopDuties = async () => {
    signing = false;
    const r = refresher;
    const d = dropbox;
    const sc = schedules;
    refresher = undefined;
    dropbox = undefined;
    schedules = [];
    await r?.stop();
    await d?.close();
    for (const x of sc) await x.stop();
  };
  // Gained and lost one after the other, never overlapping.
  let duties: Promise<void> = Promise.resolve();
  const queue = (what: string, fn: () => Promise<void>) => {
    duties = duties
      .then(fn)
      .catch((e: unknown) => log.error({ err: (e as Error).message }, `signer duties: ${what} failed`));
    return duties;
  };

  let lease: SignerLease | undefined;
  if (sharedCatalog(ctx.db)) {
    // Several masters on one catalog: only the holder of the signer lease signs (docs/operations.md).
    const ttlMs = ctx.config.signerLeaseTtlMs;
    lease = new SignerLease(ctx.db.sql, { holder: ctx.config.name, ttlMs, logger: log });
    fenceByLease(ctx.db, lease, ctx.config.name, ttlMs);
    lease.on('gained', (l: Lease) => {
      log.info({ epoch: l.epoch }, 'this master signs now');
      void queue('start', () => startDuties(true));
    });
    lease.on('lost', () => {
      // At once: the fencing already refuses commits; stop trying.
      signing = false;
      void queue('stop', stopDuties);
    });
    const l = lease;
    adminService.signing = () => signing && l.held() !== undefined;
    adminService.signer = async () => {
      const cur = await currentLease(ctx.db.sql);
      const held = l.held();
      return {
        self: ctx.config.name,
        signer: cur?.live ? cur.holder : null,
        signing: held !== undefined && signing,
        epoch: cur?.epoch ?? null,
      };
    };
    await lease.start();
    await duties;
  } else {
    await startDuties();
  }
  // Alerts are evaluated (and announced: log, webhook) in the background as well as on every status read.
  adminService.start();
  log.info({ host: opts.host, port }, 'master serving');

  return {
    url: `https://${host}:${port}`,
    port,
    server,
    refreshNow: () => refresher?.runNow() ?? Promise.resolve(undefined),
    signing: () => signing && (lease === undefined || lease.held() !== undefined),
    admin: adminService,
    setListenerCertificate(cert) {
      listener = cert;
      serveCurrent();
    },
    deltas,
    async close() {
      await deltas.close();
      clearInterval(certTimer);
      // A clean stop gives the lease up, so another master signs at once.
      await lease?.stop({ release: true });
      await queue('stop', stopDuties);
      await adminService.close();
      events.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
