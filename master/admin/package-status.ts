import type { MasterDb } from '../db/database.js';
import type { DepotView } from './depot-status.js';

/**
 * Per live package version: on how many depots it is complete, in progress, failed or still waiting,
 * and which. Depots report generations, not packages, so a version added in generation
 * G is, on a depot serving S with target T:
 *   complete     S >= G
 *   failed       S <  G and the depot's newest sync failed
 *   in progress  S <  G <= T and its sync did not fail
 *   waiting      T <  G (the depot has not heard of it yet), or the depot never reported
 * Counting uses sorted arrays and binary search: O(versions × log depots), so 10,000 versions over
 * 1,000 depots stay well under the 100 ms budget. Names are listed for the categories that need
 * attention, up to `namesPerCategory`; the full lists come from `packageDepots`.
 */
export interface PackageStatus {
  name: string;
  version: string;
  generation: number;
  totalBytes: number;
  complete: number;
  inProgress: number;
  failed: number;
  waiting: number;
  inProgressDepots: string[];
  failedDepots: string[];
}

export type DistributionCategory = 'complete' | 'inProgress' | 'failed' | 'waiting';

interface LiveRow {
  name: string;
  version: string;
  added_generation: number;
  total_bytes: number;
}

const liveRowsCache = new WeakMap<MasterDb, { generation: number; rows: LiveRow[] }>();

/**
 * The live versions as of `generation`, cached per generation: every catalog change (publish,
 * unpublish) makes a new generation, so between two generations these 10,000 rows cannot change and
 * the status model does not read and sort them again for every request.
 */
export async function liveVersionRowsAt(m: MasterDb, generation: number): Promise<LiveRow[]> {
  const hit = liveRowsCache.get(m);
  if (hit && hit.generation === generation) return hit.rows;
  const rows = await liveVersionRows(m);
  liveRowsCache.set(m, { generation, rows });
  return rows;
}

export async function liveVersionRows(m: MasterDb): Promise<LiveRow[]> {
  return m.sql.all<LiveRow>(
    `SELECT p.name, v.version, v.added_generation, v.total_bytes FROM package_versions v JOIN packages p ON p.id = v.package_id
       WHERE v.removed_generation IS NULL ORDER BY p.name, v.added_generation, v.id`,
  );
}

/** Which category a version added in `generation` is in on one depot. */
export function categoryOn(d: DepotView, generation: number): DistributionCategory {
  if (d.servedGeneration === null) return 'waiting';
  if (d.servedGeneration >= generation) return 'complete';
  if (d.lastError) return 'failed';
  if ((d.targetGeneration ?? 0) >= generation) return 'inProgress';
  return 'waiting';
}

export function packageStatuses(
  rows: LiveRow[],
  depots: DepotView[],
  namesPerCategory = 20,
): PackageStatus[] {
  const fleet = depots.filter((d) => d.machineState === 'approved');
  const reported = fleet.filter((d) => d.servedGeneration !== null);
  const served = sorted(reported.map((d) => d.servedGeneration!));
  const failingServed = sorted(reported.filter((d) => d.lastError).map((d) => d.servedGeneration!));
  const healthy = reported.filter((d) => !d.lastError);
  const healthyServed = sorted(healthy.map((d) => d.servedGeneration!));
  const healthyTarget = sorted(healthy.map((d) => d.targetGeneration ?? d.servedGeneration!));
  // Depots not complete for the newest generations are few in a healthy fleet: name them per generation.
  const notComplete = reported.filter((d) => d.lastError || (d.targetGeneration ?? 0) > d.servedGeneration!);
  const namesCache = new Map<number, { inProgress: string[]; failed: string[] }>();
  const namesFor = (g: number) => {
    let n = namesCache.get(g);
    if (!n) {
      n = { inProgress: [], failed: [] };
      for (const d of notComplete) {
        const c = categoryOn(d, g);
        if (c === 'inProgress' && n.inProgress.length < namesPerCategory) n.inProgress.push(d.name);
        if (c === 'failed' && n.failed.length < namesPerCategory) n.failed.push(d.name);
      }
      namesCache.set(g, n);
    }
    return n;
  };
  return rows.map((r) => {
    const g = r.added_generation;
    const complete = served.length - below(served, g);
    const failed = below(failingServed, g);
    const inProgress = below(healthyServed, g) - below(healthyTarget, g);
    const names = inProgress + failed > 0 ? namesFor(g) : { inProgress: [], failed: [] };
    return {
      name: r.name,
      version: r.version,
      generation: g,
      totalBytes: r.total_bytes,
      complete,
      inProgress,
      failed,
      waiting: fleet.length - complete - inProgress - failed,
      inProgressDepots: names.inProgress,
      failedDepots: names.failed,
    };
  });
}

/** Every depot of one version, by category (the "which" of the issue, in full). */
export function packageDepots(
  depots: DepotView[],
  generation: number,
): Record<DistributionCategory, string[]> {
  const out: Record<DistributionCategory, string[]> = {
    complete: [],
    inProgress: [],
    failed: [],
    waiting: [],
  };
  for (const d of depots) if (d.machineState === 'approved') out[categoryOn(d, generation)].push(d.name);
  return out;
}

function sorted(a: number[]): number[] {
  return a.sort((x, y) => x - y);
}

/** How many values in the sorted array are < g. */
function below(a: number[], g: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < g) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
