import { DepotsyncError } from '../../src/errors.js';
import { recordAudit } from './audit.js';
import { nowIso, transaction, type MasterDb } from './database.js';
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
  /** The depot's sequence counter's id: a new one means the counter started again (a rebuilt database). */
  boot?: string;
}

/**
 * How far a depot's sequence may advance past the last one recorded: this much, plus one per second since
 * that report (a depot makes far fewer). A report beyond is refused, not adopted, so one wild sequence
 * cannot make the master ignore the depot's genuine reports afterwards.
 */
export const SEQUENCE_JUMP_LIMIT = { base: 1000, perSecond: 1 } as const;

export interface DepotStatus extends Required<
  Omit<DepotStatusInput, 'lastSuccess' | 'lastError' | 'validUntil' | 'upstream' | 'boot'>
> {
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
export async function recordDepotStatus(
  m: MasterDb,
  machine: string,
  report: DepotStatusInput,
  opts: StatusRecordOptions = {},
): Promise<RecordOutcome> {
  const [out] = await recordDepotStatuses(m, [{ machine, report, opts }]);
  if (out instanceof Error) throw out;
  return out!;
}

/**
 * Store several reports in ONE transaction (one commit, one fsync: the master files a fleet's reports
 * in batches, see master/server/status.ts). Each report is checked on its own inside a savepoint: a
 * bad one gets its error in the result and does not undo the others.
 */
export async function recordDepotStatuses(
  m: MasterDb,
  items: ReadonlyArray<{ machine: string; report: DepotStatusInput; opts?: StatusRecordOptions }>,
): Promise<Array<RecordOutcome | DepotsyncError>> {
  const results: Array<RecordOutcome | DepotsyncError> = [];
  await transaction(m, async () => {
    const receivedAt = nowIso(m);
    for (const { machine, report, opts = {} } of items) {
      try {
        results.push(await transaction(m, () => recordOne(m, machine, report, opts, receivedAt)));
      } catch (e) {
        if (!(e instanceof DepotsyncError)) throw e;
        // Flagged for the operator: a report that contradicts what the master signed or what the depot
        // said before is refused, and the audit log says why (the route's rate limit bounds the entries).
        if (e instanceof RefusedReport) {
          await recordAudit(m, {
            actor: `machine:${machine}`,
            action: 'status.refused',
            target: machine,
            detail: { reason: e.message },
          });
        }
        results.push(e);
      }
    }
  });
  return results;
}

async function recordOne(
  m: MasterDb,
  machine: string,
  report: DepotStatusInput,
  opts: StatusRecordOptions,
  receivedAt: string,
): Promise<RecordOutcome> {
  const keep = count(opts.historyPerDepot ?? STATUS_DEFAULTS.historyPerDepot, 'historyPerDepot', 1);
  const sequence = count(report.sequence, 'status sequence', 1);
  const raw = JSON.stringify(opts.raw ?? report);
  if (raw.length > 64 * 1024)
    throw new DepotsyncError('too-large', `status report from ${machine} is larger than 64 KiB`);
  const role = (await m.sql.get<{ role: string }>('SELECT role FROM machines WHERE name = ?', [machine]))
    ?.role;
  if (!role)
    throw new DepotsyncError(
      'not-found',
      `machine ${machine} is not known; its status report was not stored`,
    );
  if (role !== 'depot')
    throw new DepotsyncError(
      'forbidden',
      `machine ${machine} is not a depot (role ${role}); only depots report status`,
    );
  // Checked against what the master signed: no depot serves, or is heading for, a generation the master
  // never made (it would show as current while it is not).
  const newest =
    (await m.sql.get<{ g: number | null }>('SELECT max(generation) AS g FROM generations'))?.g ?? 0;
  for (const field of ['servedGeneration', 'targetGeneration'] as const) {
    if (report[field] > newest) {
      const claim = `${field} ${report[field]}`;
      throw new RefusedReport(
        `status report from ${machine}: ${claim} is above the master's newest generation ${newest}`,
        {
          hint: 'the depot misreports, or serves a catalog this master no longer has (restored from an older backup?)',
        },
      );
    }
  }
  // The newest row (sequences only grow with id within a counter): one index seek on (machine, id).
  const last = await m.sql.get<{
    sequence: number;
    received_at: string;
    reported_at: string;
    report: string;
  }>(
    'SELECT sequence, received_at, reported_at, report FROM depot_status WHERE machine = ? ORDER BY id DESC LIMIT 1',
    [machine],
  );
  if (last !== undefined) {
    const lastBoot = bootOf(last.report);
    if (report.boot !== undefined && report.boot !== lastBoot) {
      // The depot's counter started again (a new boot id): accepted whatever its sequence, unless it is
      // older than the last report (a replayed report of an earlier counter).
      if (Date.parse(report.reportedAt) < Date.parse(last.reported_at)) return 'stale';
    } else {
      if (sequence <= last.sequence) return 'stale';
      const elapsedS = Math.max(0, (Date.parse(receivedAt) - Date.parse(last.received_at)) / 1000);
      const limit = SEQUENCE_JUMP_LIMIT.base + Math.floor(elapsedS * SEQUENCE_JUMP_LIMIT.perSecond);
      if (sequence - last.sequence > limit) {
        const jump = `sequence ${sequence} jumps ${sequence - last.sequence} past the last one recorded (${last.sequence})`;
        throw new RefusedReport(`status report from ${machine}: ${jump}; at most ${limit} now`, {
          hint: 'the report was not adopted; the depot keeps reporting with its own counter',
        });
      }
    }
  }
  await m.sql.run(
    `INSERT INTO depot_status (machine, received_at, reported_at, sequence, served_generation, target_generation, last_success,
         last_error, bytes_fetched, chunks_fetched, bytes_remaining, scrub_ok, scrub_failed, free_disk_bytes, valid_until, address, report, upstream)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      machine,
      receivedAt,
      report.reportedAt,
      sequence,
      count(report.servedGeneration, 'servedGeneration'),
      count(report.targetGeneration, 'targetGeneration'),
      orNull(report.lastSuccess),
      orNull(report.lastError),
      count(report.bytesFetched, 'bytesFetched'),
      count(report.chunksFetched, 'chunksFetched'),
      count(report.bytesRemaining ?? 0, 'bytesRemaining'),
      count(report.scrubOk ?? 0, 'scrubOk'),
      count(report.scrubFailed ?? 0, 'scrubFailed'),
      count(report.freeDiskBytes ?? 0, 'freeDiskBytes'),
      orNull(report.validUntil),
      orNull(opts.address),
      raw,
      orNull(report.upstream),
    ],
  );
  await m.sql.run(
    'DELETE FROM depot_status WHERE machine = ? AND id <= (SELECT id FROM depot_status WHERE machine = ? ORDER BY id DESC LIMIT 1 OFFSET ?)',
    [machine, machine, keep],
  );
  return 'recorded';
}

/** A report refused because it contradicts the master's catalog or the depot's own earlier reports. */
class RefusedReport extends DepotsyncError {
  constructor(message: string, o: { hint: string }) {
    super('bad-input', message, o);
  }
}

function bootOf(rawReport: string): string | undefined {
  try {
    const boot = (JSON.parse(rawReport) as { boot?: unknown }).boot;
    return typeof boot === 'string' ? boot : undefined;
  } catch {
    return undefined;
  }
}

/** The newest report of every depot that has reported, by machine name. */
export async function latestStatusAll(m: MasterDb): Promise<DepotStatus[]> {
  const rows = await m.sql.all<Row>(
    `SELECT s.* FROM depot_status s
       JOIN (SELECT machine, max(id) AS id FROM depot_status GROUP BY machine) latest ON latest.id = s.id
       ORDER BY s.machine`,
  );
  return rows.map(toStatus);
}

/** One depot's reports, newest first. */
export async function statusHistory(m: MasterDb, machine: string, limit = 20): Promise<DepotStatus[]> {
  return (
    await m.sql.all<Row>('SELECT * FROM depot_status WHERE machine = ? ORDER BY id DESC LIMIT ?', [
      machine,
      limit,
    ])
  ).map(toStatus);
}
