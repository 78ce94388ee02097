import type { MasterDb } from '../db/database.js';
import type { Machine } from '../db/machines.js';
import { reportSummaryOf, type ReportSummary } from '../db/status.js';

/**
 * The rows behind the depot views, read with only the columns they need: a thousand machine rows
 * without their PEM text, and each depot's newest report without the raw JSON it was stored with.
 */
export type FleetMachine = Pick<
  Machine,
  'name' | 'state' | 'parent' | 'site' | 'url' | 'certSerial' | 'certNotAfter' | 'lastSeen' | 'approvedAt'
>;
export type LatestReport = ReportSummary;

/** Approved and blocked depots: only the columns the view needs (no PEM text for a thousand rows). */
export async function fleetMachines(m: MasterDb): Promise<FleetMachine[]> {
  const rows = await m.sql.all<Record<string, string | null>>(
    `SELECT name, state, parent, site, url, cert_serial, cert_not_after, last_seen, approved_at FROM machines
       WHERE role = 'depot' AND state IN ('approved', 'blocked') ORDER BY name`,
  );
  return rows.map((r) => {
    const d: FleetMachine = { name: r.name!, state: r.state as Machine['state'] };
    if (r.parent) d.parent = r.parent;
    if (r.site) d.site = r.site;
    if (r.url) d.url = r.url;
    if (r.cert_serial) d.certSerial = r.cert_serial;
    if (r.cert_not_after) d.certNotAfter = r.cert_not_after;
    if (r.last_seen) d.lastSeen = r.last_seen;
    if (r.approved_at) d.approvedAt = r.approved_at;
    return d;
  });
}

/**
 * The newest report of every fleet depot, without the stored raw JSON. One index seek on (machine, id)
 * per depot: a GROUP BY over the whole history would read every stored report (100 per depot).
 */
export async function latestReports(m: MasterDb): Promise<Map<string, LatestReport>> {
  const rows = await m.sql.all<Record<string, string | number | null>>(
    `SELECT s.machine, s.received_at, s.served_generation, s.target_generation, s.last_success, s.last_error, s.bytes_fetched,
         s.chunks_fetched, s.bytes_remaining, s.scrub_ok, s.scrub_failed, s.free_disk_bytes, s.valid_until, s.upstream
       FROM machines d JOIN depot_status s ON s.id = (SELECT id FROM depot_status WHERE machine = d.name ORDER BY id DESC LIMIT 1)
       WHERE d.role = 'depot' AND d.state IN ('approved', 'blocked')`,
  );
  const out = new Map<string, LatestReport>();
  for (const r of rows) out.set(r.machine as string, reportSummaryOf(r));
  return out;
}
