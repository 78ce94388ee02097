import { DepotsyncError } from '../../src/errors.js';
import { transaction } from '../../src/db/transaction.js';
import { nowIso, type MasterDb } from './database.js';
import { count, orNull } from './values.js';

/**
 * Depot status reports (docs/architecture.md): the latest per depot for the dashboard and alerts, plus a
 * short history. A report is stored for the machine named by the caller (the mutual-TLS certificate, or the
 * signer of an outbox file), never for a name taken from the report body.
 */
export interface DepotStatusInput {
  servedGeneration: number;
  targetGeneration: number;
  lastSuccess?: string;
  lastError?: string;
  bytesFetched: number;
  chunksFetched: number;
  bytesRemaining?: number;
  scrubOk?: number;
  scrubFailed?: number;
  freeDiskBytes?: number;
  validUntil?: string;
  reportedAt: string;
  sequence: number;
  /** 'master' or the parent depot's machine name (tiers); absent when the report does not say. */
  upstream?: string;
}

export interface DepotStatus extends Required<Omit<DepotStatusInput, 'lastSuccess' | 'lastError' | 'validUntil' | 'upstream'>> {
  machine: string;
  receivedAt: string;
  lastSuccess?: string;
  lastError?: string;
  validUntil?: string;
  upstream?: string;
  address?: string;
  /** The report as received (including fields this version does not know). */
  report: unknown;
}

export const STATUS_DEFAULTS = { historyPerDepot: 100 } as const;

type Row = Record<string, string | number | null>;

/** A report without its bookkeeping (sequence, address, raw JSON): what the fleet views need. */
export type ReportSummary = Omit<DepotStatus, 'report' | 'address' | 'reportedAt' | 'sequence'>;

/** The summary columns of a `depot_status` row (a lean SELECT may carry only these). */
export function reportSummaryOf(r: Row): ReportSummary {
  const s: ReportSummary = {
    machine: r.machine as string,
    receivedAt: r.received_at as string,
    servedGeneration: r.served_generation as number,
    targetGeneration: r.target_generation as number,
    bytesFetched: r.bytes_fetched as number,
    chunksFetched: r.chunks_fetched as number,
    bytesRemaining: r.bytes_remaining as number,
    scrubOk: r.scrub_ok as number,
    scrubFailed: r.scrub_failed as number,
    freeDiskBytes: r.free_disk_bytes as number,
  };
  if (r.last_success !== null && r.last_success !== undefined) s.lastSuccess = r.last_success as string;
  if (r.last_error !== null && r.last_error !== undefined) s.lastError = r.last_error as string;
  if (r.valid_until !== null && r.valid_until !== undefined) s.validUntil = r.valid_until as string;
  if (r.upstream !== null && r.upstream !== undefined) s.upstream = r.upstream as string;
  return s;
}

function toStatus(r: Row): DepotStatus {
  const s: DepotStatus = {
    ...reportSummaryOf(r),
    reportedAt: r.reported_at as string,
    sequence: r.sequence as number,
    report: JSON.parse(r.report as string) as unknown,
  };
  if (r.address !== null) s.address = r.address as string;
  return s;
}

export type RecordOutcome = 'recorded' | 'stale';

export interface StatusRecordOptions {
  address?: string;
  raw?: unknown;
  historyPerDepot?: number;
}

/**
 * Store a report. Returns 'stale' (and stores nothing) when its sequence is not above the last one
 * stored for this depot: a replayed or reordered report cannot overwrite newer status.
 * Keeps the newest `historyPerDepot` rows per depot.
 */
export function recordDepotStatus(m: MasterDb, machine: string, report: DepotStatusInput, opts: StatusRecordOptions = {}): RecordOutcome {
  const [out] = recordDepotStatuses(m, [{ machine, report, opts }]);
  if (out instanceof Error) throw out;
  return out!;
}

/**
 * Store several reports in ONE transaction (one commit, one fsync: the master files a fleet's reports
 * in batches, see master/server/status.ts). Each report is checked on its own inside a savepoint: a
 * bad one gets its error in the result and does not undo the others.
 */
export function recordDepotStatuses(
  m: MasterDb,
  items: ReadonlyArray<{ machine: string; report: DepotStatusInput; opts?: StatusRecordOptions }>,
): Array<RecordOutcome | DepotsyncError> {
  const st = statements(m);
  const results: Array<RecordOutcome | DepotsyncError> = [];
  transaction(m.db, () => {
    const receivedAt = nowIso(m);
    for (const { machine, report, opts = {} } of items) {
      try {
        results.push(m.db.transaction(() => recordOne(st, machine, report, opts, receivedAt))());
      } catch (e) {
        if (!(e instanceof DepotsyncError)) throw e;
        results.push(e);
      }
    }
  });
  return results;
}

type Statements = ReturnType<typeof prepare>;
const prepared = new WeakMap<MasterDb, Statements>();

function prepare(m: MasterDb) {
  return {
    role: m.db.prepare('SELECT role FROM machines WHERE name = ?').pluck(),
    // The newest row's sequence (sequences only grow with id): one index seek on (machine, id).
    lastSequence: m.db.prepare('SELECT sequence FROM depot_status WHERE machine = ? ORDER BY id DESC LIMIT 1').pluck(),
    insert: m.db.prepare(
      `INSERT INTO depot_status (machine, received_at, reported_at, sequence, served_generation, target_generation, last_success,
         last_error, bytes_fetched, chunks_fetched, bytes_remaining, scrub_ok, scrub_failed, free_disk_bytes, valid_until, address, report, upstream)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    trim: m.db.prepare('DELETE FROM depot_status WHERE machine = ? AND id <= (SELECT id FROM depot_status WHERE machine = ? ORDER BY id DESC LIMIT 1 OFFSET ?)'),
  };
}

function statements(m: MasterDb): Statements {
  let st = prepared.get(m);
  if (!st) {
    st = prepare(m);
    prepared.set(m, st);
  }
  return st;
}

function recordOne(st: Statements, machine: string, report: DepotStatusInput, opts: StatusRecordOptions, receivedAt: string): RecordOutcome {
  const keep = count(opts.historyPerDepot ?? STATUS_DEFAULTS.historyPerDepot, 'historyPerDepot', 1);
  const sequence = count(report.sequence, 'status sequence', 1);
  const raw = JSON.stringify(opts.raw ?? report);
  if (raw.length > 64 * 1024) throw new DepotsyncError('too-large', `status report from ${machine} is larger than 64 KiB`);
  const role = st.role.get(machine) as string | undefined;
  if (!role) throw new DepotsyncError('not-found', `machine ${machine} is not known; its status report was not stored`);
  if (role !== 'depot') throw new DepotsyncError('forbidden', `machine ${machine} is not a depot (role ${role}); only depots report status`);
  const last = st.lastSequence.get(machine) as number | undefined;
  if (last !== undefined && sequence <= last) return 'stale';
  st.insert.run(
    machine, receivedAt, report.reportedAt, sequence,
    count(report.servedGeneration, 'servedGeneration'), count(report.targetGeneration, 'targetGeneration'),
    orNull(report.lastSuccess), orNull(report.lastError),
    count(report.bytesFetched, 'bytesFetched'), count(report.chunksFetched, 'chunksFetched'),
    count(report.bytesRemaining ?? 0, 'bytesRemaining'), count(report.scrubOk ?? 0, 'scrubOk'),
    count(report.scrubFailed ?? 0, 'scrubFailed'), count(report.freeDiskBytes ?? 0, 'freeDiskBytes'),
    orNull(report.validUntil), orNull(opts.address), raw, orNull(report.upstream),
  );
  st.trim.run(machine, machine, keep);
  return 'recorded';
}

/** The newest report of every depot that has reported, by machine name. */
export function latestStatusAll(m: MasterDb): DepotStatus[] {
  const rows = m.db
    .prepare(
      `SELECT s.* FROM depot_status s
       JOIN (SELECT machine, max(id) AS id FROM depot_status GROUP BY machine) latest ON latest.id = s.id
       ORDER BY s.machine`,
    )
    .all() as Row[];
  return rows.map(toStatus);
}

/** One depot's reports, newest first. */
export function statusHistory(m: MasterDb, machine: string, limit = 20): DepotStatus[] {
  return (m.db.prepare('SELECT * FROM depot_status WHERE machine = ? ORDER BY id DESC LIMIT ?').all(machine, limit) as Row[]).map(toStatus);
}
