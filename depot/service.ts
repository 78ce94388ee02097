import { CachedZstdDeltas } from '../src/deltas/source.js';
import { existsSync } from 'node:fs';
import type { Logger } from '../src/log.js';
import { reloadReport, type ReloadReport } from '../src/config/reload.js';
import {
  ListenerCertificateWatcher,
  loadListenerCertificate,
  type ListenerCertificate,
} from '../src/net/listener-cert.js';
import { loadDepotConfig, type DepotConfig } from './config.js';
import { openDepot, type Depot, type OpenDepotOptions } from './depot.js';
import { pollEnrollment } from './enroll/enroll.js';
import { renewDepotIfDue } from './enroll/renew.js';
import { depotLayout } from './layout.js';
import { createDepotApp } from './serve/app.js';
import { chunkRepairer } from './serve/repair.js';
import { depotEventHub } from './serve/events.js';
import type { EventHub } from '../src/serve/events.js';
import { notifyListenerFor, type NotifyListener } from './sync/notify-listener.js';
import { isOfflineDepot } from './offline/offline-mode.js';
import { startDepotServer, type DepotServer } from './serve/server.js';
import type { SyncResult } from './sync/engine.js';
import { pruneUnreferenced } from './sync/prune.js';
import { planOf, Scheduler, type Timers } from './sync/scheduler.js';
import { scrub, type ScrubResult } from './sync/scrub.js';
import { checkOfflineReady, startOfflineHooks, type OfflineHooks } from './offline/service-hooks.js';
import type { InboxOptions } from './offline/inbox.js';

export interface DepotService {
  depot: Depot;
  server: DepotServer;
  url: string;
  sync: Scheduler<SyncResult>;
  scrub: Scheduler<ScrubResult>;
  /** The event streams this depot serves its children ("distribute now"). */
  events: EventHub;
  /**
   * The event stream to the upstream; undefined when `notify.enabled` is false or the depot is air-gapped.
   */
  notify: NotifyListener | undefined;
  /**
   * Read depot.json again (SIGHUP) and apply what a running depot can change: log level, schedule
   * (window, interval, bandwidth), scrub settings, the listener certificate. The rest is reported as
   * needing a restart. A configuration or certificate that does not validate is refused as a whole
   * (thrown), and the running settings stay.
   */
  reload(): ReloadReport;
  stop(): Promise<void>;
}

/** Settings `reload` applies to a running depot (paths, or sections ending in '.'). */
export const DEPOT_LIVE_SETTINGS = ['logLevel', 'schedule.', 'scrub.', 'tls.certFile', 'tls.keyFile'];

export interface StartServiceOptions {
  logger: Logger;
  /** HOST:PORT, overriding depot.json. */
  listen?: string | undefined;
  /** How often a pending enrollment is polled. */
  enrollPollMs?: number;
  signal?: AbortSignal;
  timers?: Timers;
  open?: Partial<OpenDepotOptions>;
  /** Inbox settings (offline bundles; tests shorten the settle period). */
  inbox?: Partial<InboxOptions>;
  /** Called with depot.json's `logLevel` at start and on every reload (the command applies precedence). */
  onLogLevel?: (configured: string) => void;
}

function scrubPlan(config: DepotConfig) {
  return planOf({
    ...config.schedule,
    intervalMs: config.scrub.intervalMs,
    jitterMs: Math.floor(config.scrub.intervalMs / 10),
    window: '',
  });
}

/** The operator certificate depot.json names, checked; undefined when it names none. */
function listenerCertificate(config: DepotConfig, now: Date): ListenerCertificate | undefined {
  return config.tls.certFile ? loadListenerCertificate(config.tls, now) : undefined;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * `depot serve`: finish a pending enrollment (poll until approved), then serve agents and child depots
 * over HTTPS, sync on the schedule (collecting garbage after each switch), and scrub on its own
 * schedule. A failing sync never stops serving: the last good generation stays served.
 */
export async function startDepotService(
  dir: string,
  o: StartServiceOptions,
): Promise<DepotService | undefined> {
  const layout = depotLayout(dir);
  const log = o.logger;
  while (!existsSync(layout.cert) && existsSync(layout.enrollment)) {
    if (o.signal?.aborted) return undefined;
    const r = await pollEnrollment(layout, log).catch((e: unknown) => {
      log.warn({ err: (e as Error).message }, 'enrollment poll failed; retrying');
      return { state: 'pending' as const };
    });
    if (r.state === 'approved') break;
    await sleep(o.enrollPollMs ?? 10_000, o.signal);
  }
  const config = loadDepotConfig(layout.config);
  checkOfflineReady(layout, config);
  o.onLogLevel?.(config.logLevel);
  const clock = () => o.open?.now?.() ?? new Date();
  // Refused before anything starts: a depot does not come up serving a certificate that cannot work.
  const operatorCert = listenerCertificate(config, clock());
  let current = config;
  const depot = openDepot(dir, { logger: log, ...o.open });
  const listen = o.listen ?? config.listen;
  const cut = listen.lastIndexOf(':');
  let server: DepotServer;
  const events = depotEventHub(depot.db, depot.log.child({ component: 'depot.events' }));
  // Bound once the sync scheduler exists (it needs the server's credentials hook, so it comes later).
  let requestSync: ((id: string) => void) | undefined;
  try {
    const app = createDepotApp({
      db: depot.db,
      store: depot.store,
      revocations: depot.revocations,
      logger: depot.log,
      name: config.name,
      events,
      readOptions: {
        hotChunkBytes: config.serving.hotChunkBytes,
        batchMemoryBytes: config.serving.batchMemoryBytes,
        verifyOnServe: config.serving.verifyOnServe,
        verifiedTtlMs: config.serving.verifiedTtlMs,
        // The deltas this depot received are served again; none are computed here.
        zstdDeltas: new CachedZstdDeltas(depot.deltas, undefined),
        onCorrupt: chunkRepairer(depot, (id) => requestSync?.(id)),
      },
    });
    server = await startDepotServer({
      app,
      keyPem: depot.creds.keyPem,
      certPem: depot.creds.certPem,
      caPem: depot.creds.caPem,
      listener: operatorCert,
      host: listen.slice(0, cut).replace(/^\[|\]$/g, ''),
      port: Number(listen.slice(cut + 1)),
      logger: depot.log,
    });
  } catch (e) {
    await depot.close();
    throw e;
  }
  let offline: OfflineHooks;
  try {
    offline = await startOfflineHooks(depot, { logger: log, ...(o.inbox ? { inbox: o.inbox } : {}) });
  } catch (e) {
    await server.close();
    await depot.close();
    throw e;
  }
  const syncScheduler = new Scheduler<SyncResult>({
    name: 'sync',
    logger: depot.log,
    plan: planOf(config.schedule),
    ...(o.timers ? { timers: o.timers } : {}),
    task:
      offline.syncTask ??
      (async () => {
        // Renew the machine certificate first when due (2/3 of its life) or asked for by the operator.
        await renewDepotIfDue(depot, {
          now: o.open?.now?.() ?? new Date(),
          onRenewed: (creds) => server.setCredentials(creds),
        });
        const r = await depot.engine.sync();
        if (r.switched) {
          // Tell this depot's children at once (a switch by `depot sync` in another process is polled).
          events.announce();
          await depot.engine
            .exclusive('gc', () => pruneUnreferenced(depot, { graceMs: config.gc.graceMs }))
            .catch((e: unknown) => {
              depot.log.error({ err: (e as Error).message }, 'garbage collection failed');
            });
        }
        return r;
      }),
  });
  const stopping = new AbortController();
  const scrubScheduler = new Scheduler<ScrubResult>({
    name: 'scrub',
    logger: depot.log,
    plan: scrubPlan(config),
    ...(o.timers ? { timers: o.timers } : {}),
    task: () => scrub(depot, { bytesPerSecond: current.scrub.bytesPerSecond, signal: stopping.signal }),
  });
  if (!offline.syncTask) {
    // A run already under way may have planned before the chunk went missing: then one more.
    requestSync = (id) =>
      void syncScheduler
        .runNow()
        .catch(() => undefined)
        .then(() => (depot.store.has(id) ? undefined : syncScheduler.runNow()))
        .catch(() => undefined);
  }
  syncScheduler.start(0);
  scrubScheduler.start(config.scrub.intervalMs);
  // "Distribute now": hear the upstream's new generations and the operator's sync-now at once.
  const notify =
    config.notify.enabled && !isOfflineDepot(config)
      ? notifyListenerFor(depot, {
          sync: () => syncScheduler.runNow(),
          mayStart: () => syncScheduler.inWindow(),
          relay: (request) => events.syncNow(request),
          // A newer revocation list: fetch and enforce it now, then tell this depot's children at once.
          refreshRevocations: async () => {
            await depot.engine.refreshRevocations();
            events.announce();
          },
          ...(o.timers ? { timers: o.timers } : {}),
        })
      : undefined;
  notify?.start();
  // A certificate renewed in place (same files) is served without a reload too.
  const certWatch = new ListenerCertificateWatcher({
    apply: (cert) => server.setListenerCertificate(cert),
    log: depot.log.child({ component: 'depot.server' }),
  });
  certWatch.watch(config.tls);
  if (operatorCert)
    log.info(
      { subject: operatorCert.subject, notAfter: operatorCert.notAfter.toISOString() },
      'serving the operator certificate of depot.json tls.certFile',
    );
  const host = config.hosts[0] ?? '127.0.0.1';
  return {
    depot,
    server,
    url: `https://${host.includes(':') ? `[${host}]` : host}:${server.port}`,
    sync: syncScheduler,
    scrub: scrubScheduler,
    events,
    notify,
    reload() {
      let next: DepotConfig;
      let cert: ListenerCertificate | undefined;
      try {
        next = loadDepotConfig(layout.config);
        cert = listenerCertificate(next, clock());
      } catch (e) {
        log.error(
          { err: (e as Error).message, hint: (e as { hint?: string }).hint },
          'configuration reload refused; the running settings stay',
        );
        throw e;
      }
      const report = reloadReport(current, next, DEPOT_LIVE_SETTINGS);
      o.onLogLevel?.(next.logLevel);
      syncScheduler.setPlan(planOf(next.schedule));
      scrubScheduler.setPlan(scrubPlan(next));
      depot.bandwidth.setRate(next.schedule.bandwidthBytesPerSecond);
      // Read again even when the paths did not change: a renewed certificate replaces the files.
      server.setListenerCertificate(cert);
      certWatch.watch(next.tls);
      // Only what was applied: a setting that needs a restart is reported again at the next reload.
      current = {
        ...current,
        logLevel: next.logLevel,
        schedule: next.schedule,
        scrub: next.scrub,
        tls: { ...current.tls, certFile: next.tls.certFile, keyFile: next.tls.keyFile },
      };
      log.info(
        {
          applied: report.applied,
          needsRestart: report.needsRestart,
          ...(cert ? { certificate: { subject: cert.subject, notAfter: cert.notAfter.toISOString() } } : {}),
        },
        'configuration reloaded',
      );
      if (report.needsRestart.length > 0)
        log.warn(
          { settings: report.needsRestart },
          'changed settings take effect only after a restart of depot serve',
        );
      return report;
    },
    async stop() {
      stopping.abort();
      certWatch.close();
      await notify?.stop();
      events.close();
      await offline.stop();
      await syncScheduler.stop();
      await scrubScheduler.stop();
      await server.close();
      await depot.close();
    },
  };
}
