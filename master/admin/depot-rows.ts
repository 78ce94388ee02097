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
 * per depot for the ids, then the rows by primary key: a GROUP BY over the whole history would read every
 * stored report (100 per depot), and so does PostgreSQL's plan for the same seek written as a join once
 * the table has statistics (a hash join over all reports, 15 × slower at 60,000 reports).
 */
export async function latestReports(m: MasterDb): Promise<Map<string, LatestReport>> {
  const ids = (
    await m.sql.all<{ id: number | null }>(
      `SELECT (SELECT id FROM depot_status WHERE machine = d.name ORDER BY id DESC LIMIT 1) AS id
         FROM machines d WHERE d.role = 'depot' AND d.state IN ('approved', 'blocked')`,
    )
  )
    .map((r) => r.id)
    .filter((id): id is number => id !== null);
  const out = new Map<string, LatestReport>();
  // Bounded IN lists: both backends cap the number of parameters of one statement.
  for (let i = 0; i < ids.length; i += 500) {
    const batch = ids.slice(i, i + 500);
    const rows = await m.sql.all<Record<string, string | number | null>>(
      `SELECT machine, received_at, served_generation, target_generation, last_success, last_error, bytes_fetched,
           chunks_fetched, bytes_remaining, scrub_ok, scrub_failed, free_disk_bytes, valid_until, upstream
         FROM depot_status WHERE id IN (${batch.map(() => '?').join(', ')})`,
      batch,
    );
    for (const r of rows) out.set(r.machine as string, reportSummaryOf(r));
  }
  return out;
}
