import { DepotsyncError } from '../../src/errors.js';
import { transaction } from '../../src/db/transaction.js';
import { normalizeSerial } from '../../src/pki/cert-info.js';
import { nowIso, statement, type MasterDb } from './database.js';
import { byName, mustGet, type Machine, type Row } from './machine-record.js';
import { pem } from './values.js';

/**
 * Every certificate issued to a machine, kept after renewal and after the machine record is removed,
 * so revocation covers old serials too. Serials are normalised (lowercase hex, no leading zeros).
 */
export interface CertificateRecord {
  serial: string;
  machine: string;
  issuedAt: string;
  notAfter: string;
  revokedAt?: string;
}

export interface IssuedCertificate {
  pem: string;
  serial: string;
  notAfter: Date | string;
}

function toCertificate(r: Row): CertificateRecord {
  const c: CertificateRecord = {
    serial: r.serial as string,
    machine: r.machine as string,
    issuedAt: r.issued_at as string,
    notAfter: r.not_after as string,
  };
  if (r.revoked_at !== null && r.revoked_at !== undefined) c.revokedAt = r.revoked_at as string;
  return c;
}

/**
 * Store a newly issued certificate for an approved machine (first issue or renewal) and keep it in history.
 */
export function setCertificate(m: MasterDb, name: string, cert: IssuedCertificate): Machine {
  const serial = normalizeSerial(cert.serial);
  const notAfter = isoTime(cert.notAfter, 'certificate notAfter');
  const certPem = pem(cert.pem, 'certificate');
  return transaction(m.db, () => {
    const machine = mustGet(m, name);
    if (machine.state !== 'approved') {
      throw new DepotsyncError(
        'conflict',
        `machine ${name} is ${machine.state}; a certificate is issued only to an approved machine`,
      );
    }
    const clash = m.db.prepare('SELECT machine FROM certificates WHERE serial = ?').get(serial) as
      { machine: string } | undefined;
    if (clash)
      throw new DepotsyncError(
        'conflict',
        `certificate serial ${serial} was already issued (to ${clash.machine})`,
      );
    const now = nowIso(m);
    m.db
      .prepare('INSERT INTO certificates (serial, machine, issued_at, not_after) VALUES (?, ?, ?, ?)')
      .run(serial, name, now, notAfter);
    m.db
      .prepare(
        'UPDATE machines SET cert_pem = ?, cert_serial = ?, cert_not_after = ?, renew_requested = 0 WHERE name = ?',
      )
      .run(certPem, serial, notAfter, name);
    return mustGet(m, name);
  });
}

/**
 * The certificate with this serial and its machine's current record (absent if the machine was removed).
 * The mutual-TLS middleware uses it: the serial, not the name in the certificate, decides.
 */
export function bySerial(
  m: MasterDb,
  serial: string,
): { certificate: CertificateRecord; machine?: Machine } | undefined {
  let s: string;
  try {
    s = normalizeSerial(serial);
  } catch {
    return undefined;
  }
  const c = statement(m, 'SELECT * FROM certificates WHERE serial = ?').get(s) as Row | undefined;
  if (!c) return undefined;
  const machine = byName(m, c.machine as string);
  return machine ? { certificate: toCertificate(c), machine } : { certificate: toCertificate(c) };
}

export function certificatesOf(m: MasterDb, name: string): CertificateRecord[] {
  return (
    m.db.prepare('SELECT * FROM certificates WHERE machine = ? ORDER BY issued_at, serial').all(name) as Row[]
  ).map(toCertificate);
}

/**
 * Serials for the signed revocation list. Expired certificates are left out by default: they are refused
 * anyway, and the list stays short. With `includeBlocked`, the current serials of blocked machines are
 * added, so depots refuse a blocked agent too (unblocking takes them off the next list).
 */
export function revokedSerials(
  m: MasterDb,
  opts: { includeExpired?: boolean; includeBlocked?: boolean } = {},
): string[] {
  const now = opts.includeExpired ? '' : nowIso(m);
  const rows = m.db
    .prepare(
      `SELECT serial FROM certificates WHERE revoked_at IS NOT NULL AND not_after > @now
       UNION
       SELECT c.serial FROM certificates c JOIN machines mc ON mc.name = c.machine
         WHERE @blocked AND mc.state = 'blocked' AND c.revoked_at IS NULL AND c.not_after > @now
       ORDER BY serial`,
    )
    .all({ now, blocked: opts.includeBlocked ? 1 : 0 }) as { serial: string }[];
  return rows.map((r) => r.serial);
}

function isoTime(value: Date | string, field: string): string {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime()))
    throw new DepotsyncError('bad-input', `${field} is not a valid time: ${String(value)}`);
  return d.toISOString();
}
