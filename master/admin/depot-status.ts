import type { MasterDb } from '../db/database.js';
import type { Machine } from '../db/machines.js';
import { fleetMachines, latestReports, type LatestReport } from './depot-rows.js';
import type { AlertThresholds } from './config.js';
import { computeTiers } from './tiers.js';
import { UPSTREAM_MASTER } from '../../src/wire/status.js';

/**
 * One depot as the admin sees it (docs/architecture.md): the machine record joined with its
 * newest status report, plus what the master derives: lag in generations and time, ETA from recent
 * throughput, failures in a row, and a single state for the fleet overview.
 */
export type DepotState = 'current' | 'lagging' | 'failing' | 'silent' | 'never-reported' | 'blocked';
export const DEPOT_STATES: readonly DepotState[] = [
  'current',
  'lagging',
  'failing',
  'silent',
  'never-reported',
  'blocked',
];

export interface DepotView {
  name: string;
  state: DepotState;
  machineState: Machine['state'];
  /** 1 = syncs from the master; 2 = below a tier-1 depot; ...; null when unknown (tierProblem says why). */
  tier: number | null;
  /**
   * The depot it syncs from (its newest report's upstream, else its enrollment's parent); null = the master.
   */
  parent: string | null;
  /** Why the tier is unknown: an upstream cycle, or a parent that is not a fleet depot. */
  tierProblem: string | null;
  site: string | null;
  url: string | null;
  /** Offline depots are fed by bundle files; they report a validity window instead of being seen. */
  offline: boolean;
  servedGeneration: number | null;
  targetGeneration: number | null;
  lagGenerations: number;
  /** Seconds since the first generation the depot lacks was published (0 when current). */
  lagSeconds: number;
  /** When the first generation the depot lacks was published (null when current). */
  lagSince: string | null;
  bytesRemaining: number;
  /** Bytes per second over its recent reports, when known. */
  throughputBytesPerSecond: number | null;
  etaSeconds: number | null;
  lastSuccess: string | null;
  lastError: string | null;
  lastSeen: string | null;
  /** When an operator (or a token) approved it: a depot never heard from since is silent too. */
  approvedAt: string | null;
  lastReport: string | null;
  consecutiveFailures: number;
  scrub: { ok: number; failed: number };
  freeDiskBytes: number | null;
  certificate: { serial: string | null; notAfter: string | null; daysLeft: number | null };
  validUntil: string | null;
}

const DAY_MS = 86_400_000;
const HISTORY_FOR_RATE = 10;
const RATE_WINDOW_MS = 6 * 3_600_000;
const MAX_STREAK = 100;

/** Every approved or blocked depot, newest facts first; pending depots are enrollment requests, not fleet. */
export async function depotViews(
  m: MasterDb,
  current: number,
  thresholds: AlertThresholds,
  nowMs: number,
): Promise<DepotView[]> {
  const machines = await fleetMachines(m);
  const latest = await latestReports(m);
  // Tiers: what each depot's newest report says it syncs from, else its enrollment's parent, else the master.
  const tiers = computeTiers(
    new Map(machines.map((d) => [d.name, latest.get(d.name)?.upstream ?? d.parent ?? UPSTREAM_MASTER])),
    UPSTREAM_MASTER,
  );
  const createdAt = generationTimes(m);
  // Failures in a row and the fetch rate: only depots whose newest report failed, or that still fetch,
  // need their history; one query each for all of them, not one per depot.
  const names = (keep: (s: LatestReport) => boolean) =>
    machines.map((d) => d.name).filter((n) => latest.has(n) && keep(latest.get(n)!));
  const streaks = await newestReports<{ last_error: string | null }>(
    m,
    'last_error',
    names((s) => Boolean(s.lastError)),
    MAX_STREAK,
  );
  const rates = await newestReports<RateRow>(
    m,
    'received_at, bytes_fetched',
    names((s) => (s.bytesRemaining ?? 0) > 0),
    HISTORY_FOR_RATE,
    new Date(nowMs - RATE_WINDOW_MS).toISOString(),
  );
  const views: DepotView[] = [];
  for (const d of machines) {
    const s = latest.get(d.name);
    const served = s?.servedGeneration ?? null;
    const lagGenerations = served === null ? current : Math.max(0, current - served);
    const firstMissing = await createdAt(served === null ? 1 : served + 1);
    const lagSeconds =
      lagGenerations > 0 && firstMissing !== undefined
        ? Math.max(0, Math.round((nowMs - firstMissing) / 1000))
        : 0;
    const lastError = s?.lastError ? s.lastError : null;
    const consecutiveFailures = lastError
      ? countLeading((streaks.get(d.name) ?? []).map((r) => r.last_error))
      : 0;
    const bytesRemaining = s?.bytesRemaining ?? 0;
    const rate = bytesRemaining > 0 ? throughput(rates.get(d.name) ?? []) : null;
    const lastSeen = latest2(d.lastSeen, s?.receivedAt);
    const offline = s?.validUntil !== undefined;
    const notAfter = d.certNotAfter ?? null;
    const tier = tiers.get(d.name)!;
    const view: DepotView = {
      name: d.name,
      state: 'current',
      machineState: d.state,
      tier: tier.tier,
      parent: tier.parent,
      tierProblem: tier.problem,
      site: d.site ?? null,
      url: d.url ?? null,
      offline,
      servedGeneration: served,
      targetGeneration: s ? s.targetGeneration : null,
      lagGenerations,
      lagSeconds,
      lagSince:
        lagGenerations > 0 && firstMissing !== undefined ? new Date(firstMissing).toISOString() : null,
      bytesRemaining,
      throughputBytesPerSecond: rate,
      etaSeconds: rate && bytesRemaining > 0 ? Math.ceil(bytesRemaining / rate) : null,
      lastSuccess: s?.lastSuccess ?? null,
      lastError,
      lastSeen,
      approvedAt: d.approvedAt ?? null,
      lastReport: s?.receivedAt ?? null,
      consecutiveFailures,
      scrub: { ok: s?.scrubOk ?? 0, failed: s?.scrubFailed ?? 0 },
      freeDiskBytes: s && s.freeDiskBytes > 0 ? s.freeDiskBytes : null,
      certificate: {
        serial: d.certSerial ?? null,
        notAfter,
        daysLeft: notAfter ? Math.floor((Date.parse(notAfter) - nowMs) / DAY_MS) : null,
      },
      validUntil: s?.validUntil ?? null,
    };
    view.state = classify(view, s, thresholds, nowMs);
    views.push(view);
  }
  return views;
}

function classify(v: DepotView, s: LatestReport | undefined, t: AlertThresholds, nowMs: number): DepotState {
  if (v.machineState === 'blocked') return 'blocked';
  if (!s) return 'never-reported';
  if (!v.offline && v.lastSeen && nowMs - Date.parse(v.lastSeen) > t.silentMinutes * 60_000) return 'silent';
  if (v.lastError) return 'failing';
  if (v.lagGenerations > 0) return 'lagging';
  return 'current';
}

/** created_at (ms) of a generation, by lookup with a small cache (lagging depots share generations). */
function generationTimes(m: MasterDb): (generation: number) => Promise<number | undefined> {
  const cache = new Map<number, number | undefined>();
  return async (g) => {
    if (!cache.has(g)) {
      const at = (
        await m.sql.get<{ created_at: string }>('SELECT created_at FROM generations WHERE generation = ?', [
          g,
        ])
      )?.created_at;
      cache.set(g, at === undefined ? undefined : Date.parse(at));
    }
    return cache.get(g);
  };
}

/**
 * The newest `limit` reports (only `columns`) of each of `machines`, newest first, received at or after
 * `since` if given.
 */
async function newestReports<T>(
  m: MasterDb,
  columns: string,
  machines: string[],
  limit: number,
  since?: string,
): Promise<Map<string, T[]>> {
  const out = new Map<string, T[]>();
  // Bounded IN lists: both backends cap the number of parameters of one statement.
  for (let i = 0; i < machines.length; i += 500) {
    const batch = machines.slice(i, i + 500);
    const rows = await m.sql.all<T & { machine: string }>(
      `SELECT machine, ${columns} FROM (
         SELECT machine, ${columns}, ROW_NUMBER() OVER (PARTITION BY machine ORDER BY id DESC) AS newest
           FROM depot_status WHERE machine IN (${batch.map(() => '?').join(', ')})${since === undefined ? '' : ' AND received_at >= ?'}
       ) r WHERE newest <= ? ORDER BY newest`,
      [...batch, ...(since === undefined ? [] : [since]), limit],
    );
    for (const r of rows) {
      const list = out.get(r.machine) ?? [];
      list.push(r);
      out.set(r.machine, list);
    }
  }
  return out;
}

function countLeading(errors: (string | null)[]): number {
  let n = 0;
  for (const e of errors) {
    if (!e) break;
    n++;
  }
  return n;
}

interface RateRow {
  received_at: string;
  bytes_fetched: number;
}

/** Bytes per second over the reports (newest first): bytes after the oldest, over the time they span. */
export function throughput(rows: RateRow[]): number | null {
  if (rows.length < 2) return null;
  const newest = Date.parse(rows[0]!.received_at);
  const oldest = Date.parse(rows[rows.length - 1]!.received_at);
  const spanS = (newest - oldest) / 1000;
  const bytes = rows.slice(0, -1).reduce((a, r) => a + r.bytes_fetched, 0);
  return spanS > 0 && bytes > 0 ? bytes / spanS : null;
}

function latest2(a: string | undefined, b: string | undefined): string | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return a > b ? a : b;
}
