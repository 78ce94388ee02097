import { CachedZstdDeltas } from '../src/deltas/source.js';
import { existsSync } from 'node:fs';
import type { Logger } from '../src/log.js';
import { loadDepotConfig } from './config.js';
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
  stop(): Promise<void>;
}

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
    plan: planOf({
      ...config.schedule,
      intervalMs: config.scrub.intervalMs,
      jitterMs: Math.floor(config.scrub.intervalMs / 10),
      window: '',
    }),
    ...(o.timers ? { timers: o.timers } : {}),
    task: () => scrub(depot, { bytesPerSecond: config.scrub.bytesPerSecond, signal: stopping.signal }),
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
  const host = config.hosts[0] ?? '127.0.0.1';
  return {
    depot,
    server,
    url: `https://${host.includes(':') ? `[${host}]` : host}:${server.port}`,
    sync: syncScheduler,
    scrub: scrubScheduler,
    events,
    notify,
    async stop() {
      stopping.abort();
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
