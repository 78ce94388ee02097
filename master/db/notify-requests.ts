import { nowIso, type MasterDb } from './database.js';
import { text } from './values.js';

/**
 * Sync-now requests (`master notify`, schema V3). Written by the command's process, read by the
 * serving master's event feed by primary key, so each poll is one indexed range query.
 */
export interface NotifyRequest {
  seq: number;
  /** null: every depot. */
  depot: string | null;
  requestedAt: string;
  requestedBy: string;
}

/** Requests kept; older rows are pruned on insert (the audit log keeps the history). */
export const NOTIFY_KEEP_ROWS = 1000;

interface Row {
  seq: number;
  depot: string | null;
  requested_at: string;
  requested_by: string;
}

const toRequest = (r: Row): NotifyRequest => ({
  seq: r.seq,
  depot: r.depot,
  requestedAt: r.requested_at,
  requestedBy: r.requested_by,
});

/** Insert a request (call inside the transaction that also audits it). */
export async function insertNotifyRequest(
  m: MasterDb,
  input: { depot: string | null; by: string },
): Promise<NotifyRequest> {
  const row = await m.sql.get<Row>(
    'INSERT INTO notify_requests (depot, requested_at, requested_by) VALUES (?, ?, ?) RETURNING *',
    [
      input.depot === null ? null : text(input.depot, 'notify depot', 64),
      nowIso(m),
      text(input.by, 'notify requested_by'),
    ],
  );
  await m.sql.run('DELETE FROM notify_requests WHERE seq <= ?', [row!.seq - NOTIFY_KEEP_ROWS]);
  return toRequest(row!);
}

/** Requests after `seq`, oldest first (at most `limit`). */
export async function notifyRequestsAfter(m: MasterDb, seq: number, limit = 100): Promise<NotifyRequest[]> {
  return (
    await m.sql.all<Row>('SELECT * FROM notify_requests WHERE seq > ? ORDER BY seq LIMIT ?', [seq, limit])
  ).map(toRequest);
}

/** The newest request's sequence number (0 when there is none). */
export async function lastNotifySeq(m: MasterDb): Promise<number> {
  return (await m.sql.get<{ s: number | null }>('SELECT max(seq) AS s FROM notify_requests'))?.s ?? 0;
}
