import { DepotsyncError } from '../../src/errors.js';
import { nowIso, type MasterDb } from './database.js';
import { count, orNull, text } from './values.js';

/**
 * The audit trail: who did what to which object, from where. Append-only; nothing here updates or
 * deletes a record. Record inside the same transaction as the change it describes where possible.
 */
export interface AuditInput {
  /** An operator name, 'cli:<user>', 'machine:<name>', 'system'. */
  actor: string;
  /** A verb such as 'publish', 'unpublish', 'machine.approve', 'operator.add', 'token.create'. */
  action: string;
  target?: string;
  /** A small JSON-serialisable object. Never put secrets in it. */
  detail?: Record<string, unknown>;
  address?: string;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  detail: Record<string, unknown>;
  address?: string;
}

export const AUDIT_LIMITS = { maxDetailBytes: 16 * 1024, defaultPage: 50, maxPage: 1000 } as const;

interface AuditRow {
  id: number;
  at: string;
  actor: string;
  action: string;
  target: string;
  detail: string;
  address: string | null;
}

const toEntry = (r: AuditRow): AuditEntry => {
  const e: AuditEntry = {
    id: r.id,
    at: r.at,
    actor: r.actor,
    action: r.action,
    target: r.target,
    detail: JSON.parse(r.detail) as Record<string, unknown>,
  };
  if (r.address !== null) e.address = r.address;
  return e;
};

export async function recordAudit(m: MasterDb, input: AuditInput): Promise<AuditEntry> {
  const detail = JSON.stringify(input.detail ?? {});
  if (Buffer.byteLength(detail) > AUDIT_LIMITS.maxDetailBytes) {
    throw new DepotsyncError(
      'too-large',
      `audit detail for ${input.action} is larger than ${AUDIT_LIMITS.maxDetailBytes} bytes`,
    );
  }
  const row = await m.sql.get<AuditRow>(
    'INSERT INTO audit_log (at, actor, action, target, detail, address) VALUES (?, ?, ?, ?, ?, ?) RETURNING *',
    [
      nowIso(m),
      text(input.actor, 'audit actor'),
      text(input.action, 'audit action', 64),
      input.target === undefined ? '' : text(input.target, 'audit target', 512),
      detail,
      orNull(input.address),
    ],
  );
  return toEntry(row!);
}

/**
 * Entries newest first. Page backwards with `before` = the `nextBefore` of the previous page
 * (keyset paging: stable while new entries arrive).
 */
export async function listAudit(
  m: MasterDb,
  opts: { limit?: number; before?: number; actor?: string; action?: string; target?: string } = {},
): Promise<{ entries: AuditEntry[]; nextBefore?: number }> {
  const limit = Math.min(
    count(opts.limit ?? AUDIT_LIMITS.defaultPage, 'audit limit', 1),
    AUDIT_LIMITS.maxPage,
  );
  const where = ['id < ?'];
  const params: (string | number)[] = [opts.before ?? Number.MAX_SAFE_INTEGER];
  for (const col of ['actor', 'action', 'target'] as const) {
    const v = opts[col];
    if (v !== undefined) {
      where.push(`${col} = ?`);
      params.push(v);
    }
  }
  const rows = await m.sql.all<AuditRow>(
    `SELECT * FROM audit_log WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`,
    [...params, limit + 1],
  );
  const entries = rows.slice(0, limit).map(toEntry);
  const last = entries[entries.length - 1];
  return rows.length > limit && last ? { entries, nextBefore: last.id } : { entries };
}
