import { readFileSync } from 'node:fs';
import { certificateInfo } from '../../src/pki/cert-info.js';
import type { MasterDb } from '../db/database.js';
import type { MasterLayout } from '../layout.js';

/** Certificates nearing expiry: every approved machine's, and the master's own server and CA certificates. */
export interface ExpiringCertificate {
  /** A machine name, or 'master (server)' / 'master (CA)'. */
  subject: string;
  role: 'depot' | 'agent' | 'master';
  serial: string | null;
  notAfter: string;
  daysLeft: number;
  renewRequested: boolean;
}

const DAY_MS = 86_400_000;

export interface OwnCertificate {
  subject: string;
  serial: string;
  notAfter: string;
}

/** The master's server and CA certificates (read once; they change only by re-initialisation). */
export function ownCertificates(layout: Pick<MasterLayout, 'serverCert' | 'caCert'>): OwnCertificate[] {
  const out: OwnCertificate[] = [];
  for (const [subject, path] of [
    ['master (server)', layout.serverCert],
    ['master (CA)', layout.caCert],
  ] as const) {
    try {
      const info = certificateInfo(readFileSync(path, 'utf8'));
      out.push({ subject, serial: info.serial, notAfter: info.notAfter.toISOString() });
    } catch {
      // A missing or unreadable file is the server's problem to report; the status view goes on.
    }
  }
  return out;
}

/** Certificates expiring within `withinDays` (or already expired), soonest first. */
export async function expiringCertificates(
  m: MasterDb,
  withinDays: number,
  nowMs: number,
  own: OwnCertificate[] = [],
): Promise<ExpiringCertificate[]> {
  // Whole days left (floor) <= withinDays: anything before the end of day withinDays + 1.
  const limit = new Date(nowMs + (withinDays + 1) * DAY_MS).toISOString();
  const rows = await m.sql.all<{
    name: string;
    role: 'depot' | 'agent';
    cert_serial: string | null;
    cert_not_after: string;
    renew_requested: number;
  }>(
    `SELECT name, role, cert_serial, cert_not_after, renew_requested FROM machines
       WHERE state = 'approved' AND cert_not_after IS NOT NULL AND cert_not_after <= ? ORDER BY cert_not_after, name`,
    [limit],
  );
  const out: ExpiringCertificate[] = rows
    .filter((r) => daysLeft(r.cert_not_after, nowMs) <= withinDays)
    .map((r) => ({
      subject: r.name,
      role: r.role,
      serial: r.cert_serial,
      notAfter: r.cert_not_after,
      daysLeft: daysLeft(r.cert_not_after, nowMs),
      renewRequested: r.renew_requested === 1,
    }));
  for (const c of own) {
    if (daysLeft(c.notAfter, nowMs) <= withinDays)
      out.push({
        subject: c.subject,
        role: 'master',
        serial: c.serial,
        notAfter: c.notAfter,
        daysLeft: daysLeft(c.notAfter, nowMs),
        renewRequested: false,
      });
  }
  return out.sort((a, b) => (a.notAfter < b.notAfter ? -1 : a.notAfter > b.notAfter ? 1 : 0));
}

export function daysLeft(notAfter: string, nowMs: number): number {
  return Math.floor((Date.parse(notAfter) - nowMs) / DAY_MS);
}
