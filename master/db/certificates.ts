import { DepotsyncError } from '../../src/errors.js';
import { normalizeSerial } from '../../src/pki/cert-info.js';
import { nowIso, transaction, type MasterDb } from './database.js';
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
export async function setCertificate(m: MasterDb, name: string, cert: IssuedCertificate): Promise<Machine> {
  const serial = normalizeSerial(cert.serial);
  const notAfter = isoTime(cert.notAfter, 'certificate notAfter');
  const certPem = pem(cert.pem, 'certificate');
  return transaction(m, async () => {
    const machine = await mustGet(m, name);
    if (machine.state !== 'approved') {
      throw new DepotsyncError(
        'conflict',
        `machine ${name} is ${machine.state}; a certificate is issued only to an approved machine`,
      );
    }
    const clash = await m.sql.get<{ machine: string }>('SELECT machine FROM certificates WHERE serial = ?', [
      serial,
    ]);
    if (clash)
      throw new DepotsyncError(
        'conflict',
        `certificate serial ${serial} was already issued (to ${clash.machine})`,
      );
    const now = nowIso(m);
    await m.sql.run('INSERT INTO certificates (serial, machine, issued_at, not_after) VALUES (?, ?, ?, ?)', [
      serial,
      name,
      now,
      notAfter,
    ]);
    await m.sql.run(
      'UPDATE machines SET cert_pem = ?, cert_serial = ?, cert_not_after = ?, renew_requested = 0 WHERE name = ?',
      [certPem, serial, notAfter, name],
    );
    return mustGet(m, name);
  });
}

/**
 * The certificate with this serial and its machine's current record (absent if the machine was removed).
 * The mutual-TLS middleware uses it: the serial, not the name in the certificate, decides.
 */
export async function bySerial(
  m: MasterDb,
  serial: string,
): Promise<{ certificate: CertificateRecord; machine?: Machine } | undefined> {
  let s: string;
  try {
    s = normalizeSerial(serial);
  } catch {
    return undefined;
  }
  const c = await m.sql.get<Row>('SELECT * FROM certificates WHERE serial = ?', [s]);
  if (!c) return undefined;
  const machine = await byName(m, c.machine as string);
  return machine ? { certificate: toCertificate(c), machine } : { certificate: toCertificate(c) };
}

export async function certificatesOf(m: MasterDb, name: string): Promise<CertificateRecord[]> {
  return (
    await m.sql.all<Row>('SELECT * FROM certificates WHERE machine = ? ORDER BY issued_at, serial', [name])
  ).map(toCertificate);
}

/**
 * Serials for the signed revocation list. Expired certificates are left out by default: they are refused
 * anyway, and the list stays short. With `includeBlocked`, the current serials of blocked machines are
 * added, so depots refuse a blocked agent too (unblocking takes them off the next list).
 */
export async function revokedSerials(
  m: MasterDb,
  opts: { includeExpired?: boolean; includeBlocked?: boolean } = {},
): Promise<string[]> {
  const now = opts.includeExpired ? '' : nowIso(m);
  const rows = opts.includeBlocked
    ? await m.sql.all<{ serial: string }>(
        `SELECT serial FROM certificates WHERE revoked_at IS NOT NULL AND not_after > ?
         UNION
         SELECT c.serial FROM certificates c JOIN machines mc ON mc.name = c.machine
           WHERE mc.state = 'blocked' AND c.revoked_at IS NULL AND c.not_after > ?
         ORDER BY serial`,
        [now, now],
      )
    : await m.sql.all<{ serial: string }>(
        'SELECT serial FROM certificates WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY serial',
        [now],
      );
  return rows.map((r) => r.serial);
}

function isoTime(value: Date | string, field: string): string {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime()))
    throw new DepotsyncError('bad-input', `${field} is not a valid time: ${String(value)}`);
  return d.toISOString();
}
