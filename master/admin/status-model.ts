import { currentGeneration } from '../db/catalog.js';
import { readTransaction, type MasterDb } from '../db/database.js';
import { listMachines } from '../db/machines.js';
import { computeAlerts, sortAlerts, type Alert } from './alerts.js';
import { keyAlerts } from './key-alerts.js';
import { expiringCertificates, type ExpiringCertificate, type OwnCertificate } from './certificates.js';
import type { AdminSettings } from './config.js';
import { DEPOT_STATES, depotViews, type DepotState, type DepotView } from './depot-status.js';
import { liveVersionRowsAt, packageStatuses, type PackageStatus } from './package-status.js';

/**
 * The fleet's status: what `GET /v1/admin/status`, `depotsync status --dir M`, the dashboard and the
 * alerts all read (one model, so they never disagree). Shape (docs/http.md):
 *   {generation, generatedAt, summary, depots:[…], packages:[…], pending:[…], certificates:[…], alerts:[…]}
 */
export interface PendingMachine {
  name: string;
  role: 'depot' | 'agent';
  requestedAt: string;
  site: string | null;
  parent: string | null;
}

export interface FleetStatus {
  master: string;
  generation: number;
  generationCreatedAt: string | null;
  generatedAt: string;
  summary: Record<DepotState, number> & {
    depots: number;
    offline: number;
    packages: number;
    pending: number;
    alerts: { warning: number; error: number };
  };
  depots: DepotView[];
  packages: PackageStatus[];
  pending: PendingMachine[];
  certificates: ExpiringCertificate[];
  alerts: Alert[];
}

export interface StatusDeps {
  db: MasterDb;
  settings: AdminSettings;
  masterName: string;
  ownCertificates?: OwnCertificate[];
}

export interface StatusOptions {
  /** false: leave out the per-version list (the fleet view only). */
  packages?: boolean;
  nowMs?: number;
}

export async function buildFleetStatus(deps: StatusDeps, opts: StatusOptions = {}): Promise<FleetStatus> {
  const { db, settings } = deps;
  const nowMs = opts.nowMs ?? db.now().getTime();
  // One read-only transaction: every number in the answer comes from the same moment of the database.
  return readTransaction(db, async () => {
    const generation = await currentGeneration(db);
    const depots = await depotViews(db, generation, settings.alerts, nowMs);
    const live = await liveVersionRowsAt(db, generation);
    const packages = opts.packages === false ? [] : packageStatuses(live, depots);
    const pending = (await listMachines(db, { state: 'pending' })).map((p) => ({
      name: p.name,
      role: p.role,
      requestedAt: p.requestedAt,
      site: p.site ?? null,
      parent: p.parent ?? null,
    }));
    const certificates = await expiringCertificates(
      db,
      settings.alerts.certWarningDays,
      nowMs,
      deps.ownCertificates ?? [],
    );
    // The master's own signed metadata (root expiry above all) alongside the fleet's conditions.
    const alerts = sortAlerts([
      ...computeAlerts(depots, certificates, settings.alerts, nowMs),
      ...(await keyAlerts(db, nowMs)),
    ]);
    const created = (
      await db.sql.get<{ created_at: string }>('SELECT created_at FROM generations WHERE generation = ?', [
        generation,
      ])
    )?.created_at;
    const counts = Object.fromEntries(DEPOT_STATES.map((s) => [s, 0])) as Record<DepotState, number>;
    for (const d of depots) counts[d.state]++;
    return {
      master: deps.masterName,
      generation,
      generationCreatedAt: created ?? null,
      generatedAt: new Date(nowMs).toISOString(),
      summary: {
        ...counts,
        depots: depots.length,
        offline: depots.filter((d) => d.offline).length,
        packages: live.length,
        pending: pending.length,
        alerts: {
          warning: alerts.filter((a) => a.level === 'warning').length,
          error: alerts.filter((a) => a.level === 'error').length,
        },
      },
      depots,
      packages,
      pending,
      certificates,
      alerts,
    };
  });
}
