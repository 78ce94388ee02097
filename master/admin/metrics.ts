import { Counter, Gauge, type Registry } from 'prom-client';
import { httpMetrics, type HttpMetrics } from '../../src/metrics/http.js';
import { newRegistry } from '../../src/metrics/registry.js';
import type { AlertMonitor } from './alert-monitor.js';
import type { FleetStatus } from './status-model.js';

/**
 * The master's Prometheus metrics. Counters are fed as things happen (requests, bytes
 * served); gauges read the fleet status model at scrape time, so `/metrics`, the API and the dashboard
 * agree. Per-depot series carry a `depot` label (one series per depot: thousands at most).
 */
export interface MasterMetrics {
  registry: Registry;
  http: HttpMetrics;
  servedBytes: Counter<'kind'>;
  servedChunkPlainBytes: Counter;
  servedChunks: Counter;
  loginAttempts: Counter<'outcome'>;
}

export interface MasterMetricsSource {
  /** The status model without the per-version list (cheap). */
  fleet(): Promise<FleetStatus>;
  monitor?: AlertMonitor | undefined;
  sessions(): Promise<number>;
  /** Whether this master signs now (several masters: the signer-lease holder). */
  signing?: () => boolean;
  /** Alert notification channels and their counts so far. */
  deliveries?: () => Partial<Record<'webhook' | 'mail', DeliveryCounts>>;
}

export interface DeliveryCounts {
  delivered?: number;
  sent?: number;
  failed: number;
  dropped: number;
}

export function masterMetrics(src: MasterMetricsSource): MasterMetrics {
  const registry = newRegistry();
  const reg = [registry];
  // One model per scrape: every gauge's collect() asks, the first computes (prom-client awaits collect()).
  let cached: { at: number; fleet: Promise<FleetStatus> } | undefined;
  const fleet = (): Promise<FleetStatus> => {
    const now = performance.now();
    if (!cached || now - cached.at > 1000) cached = { at: now, fleet: src.fleet() };
    return cached.fleet;
  };
  const gauge = (
    name: string,
    help: string,
    labelNames: string[],
    fill: (g: Gauge<string>, f: FleetStatus) => void,
  ) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: reg,
      async collect() {
        const f = await fleet();
        this.reset();
        fill(this, f);
      },
    });

  new Gauge({
    name: 'depotsync_master_signer',
    help: 'Whether this master signs now (1) or serves only (0); several masters share one catalog',
    registers: reg,
    collect() {
      this.set(src.signing === undefined || src.signing() ? 1 : 0);
    },
  });
  gauge('depotsync_master_generation', 'Newest generation the master has published', [], (g, f) =>
    g.set(f.generation),
  );
  gauge(
    'depotsync_depots',
    'Depots by state (current, lagging, failing, silent, never-reported, blocked)',
    ['state'],
    (g, f) => {
      for (const [state, n] of Object.entries(f.summary))
        if (
          typeof n === 'number' &&
          state !== 'depots' &&
          state !== 'offline' &&
          state !== 'packages' &&
          state !== 'pending'
        )
          g.set({ state }, n);
    },
  );
  gauge(
    'depotsync_depot_served_generation',
    'Generation each depot serves, from its newest report',
    ['depot'],
    (g, f) => {
      for (const d of f.depots) if (d.servedGeneration !== null) g.set({ depot: d.name }, d.servedGeneration);
    },
  );
  gauge(
    'depotsync_depot_lag_generations',
    'Generations each depot is behind the master',
    ['depot'],
    (g, f) => {
      for (const d of f.depots) g.set({ depot: d.name }, d.lagGenerations);
    },
  );
  gauge(
    'depotsync_depot_lag_seconds',
    'Seconds since the first generation a depot lacks was published',
    ['depot'],
    (g, f) => {
      for (const d of f.depots) g.set({ depot: d.name }, d.lagSeconds);
    },
  );
  gauge('depotsync_depot_remaining_bytes', 'Bytes each depot still has to fetch', ['depot'], (g, f) => {
    for (const d of f.depots) g.set({ depot: d.name }, d.bytesRemaining);
  });
  gauge(
    'depotsync_depot_scrub_failed_chunks',
    "Damaged chunks found by each depot's last scrub",
    ['depot'],
    (g, f) => {
      for (const d of f.depots) g.set({ depot: d.name }, d.scrub.failed);
    },
  );
  gauge('depotsync_depot_free_disk_bytes', 'Free disk each depot reported', ['depot'], (g, f) => {
    for (const d of f.depots) if (d.freeDiskBytes !== null) g.set({ depot: d.name }, d.freeDiskBytes);
  });
  gauge('depotsync_depot_consecutive_failed_syncs', 'Failed syncs in a row per depot', ['depot'], (g, f) => {
    for (const d of f.depots) g.set({ depot: d.name }, d.consecutiveFailures);
  });
  gauge(
    'depotsync_certificate_expiry_timestamp_seconds',
    'Unix time at which a certificate expires: every depot, and machines or master certificates nearing expiry',
    ['subject', 'role'],
    (g, f) => {
      for (const d of f.depots)
        if (d.certificate.notAfter)
          g.set({ subject: d.name, role: 'depot' }, Math.floor(Date.parse(d.certificate.notAfter) / 1000));
      for (const c of f.certificates)
        g.set({ subject: c.subject, role: c.role }, Math.floor(Date.parse(c.notAfter) / 1000));
    },
  );
  gauge('depotsync_enrollment_queue_length', 'Machines waiting for approval', [], (g, f) =>
    g.set(f.pending.length),
  );
  gauge('depotsync_alerts_active', 'Active alerts by level', ['level'], (g, f) => {
    g.set({ level: 'warning' }, f.summary.alerts.warning);
    g.set({ level: 'error' }, f.summary.alerts.error);
  });
  new Gauge({
    name: 'depotsync_dashboard_sessions',
    help: 'Active operator sessions',
    registers: reg,
    async collect() {
      this.set(await src.sessions());
    },
  });
  new Counter({
    name: 'depotsync_alerts_raised_total',
    help: 'Alerts raised since the master started',
    registers: reg,
    collect() {
      this.reset();
      this.inc(src.monitor?.raisedTotal ?? 0);
    },
  });
  new Counter({
    name: 'depotsync_alert_notifications_total',
    help: 'Alert notifications by channel (webhook, mail) and outcome (delivered, failed after every retry, dropped from a full queue)',
    labelNames: ['channel', 'outcome'],
    registers: reg,
    collect() {
      this.reset();
      for (const [channel, n] of Object.entries(src.deliveries?.() ?? {})) {
        this.inc({ channel, outcome: 'delivered' }, n.delivered ?? n.sent ?? 0);
        this.inc({ channel, outcome: 'failed' }, n.failed);
        this.inc({ channel, outcome: 'dropped' }, n.dropped);
      }
    },
  });
  return {
    registry,
    http: httpMetrics(registry),
    servedBytes: new Counter({
      name: 'depotsync_served_bytes_total',
      help: 'Bytes served to depots and agents, as sent (chunks compressed where sent so), by kind (chunk, metadata, target)',
      labelNames: ['kind'],
      registers: reg,
    }),
    servedChunkPlainBytes: new Counter({
      name: 'depotsync_served_chunk_plain_bytes_total',
      help: 'Plain (decompressed) bytes of the chunks served',
      registers: reg,
    }),
    servedChunks: new Counter({
      name: 'depotsync_served_chunks_total',
      help: 'Chunks served to depots and agents',
      registers: reg,
    }),
    loginAttempts: new Counter({
      name: 'depotsync_dashboard_logins_total',
      help: 'Dashboard login attempts by outcome (ok, failed, limited)',
      labelNames: ['outcome'],
      registers: reg,
    }),
  };
}
