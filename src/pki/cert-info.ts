import { X509Certificate } from 'node:crypto';
import { DepotsyncError } from '../errors.js';
import { DAY_MS } from './forge-util.js';
import { isMachineRole, type MachineRole } from './names.js';

/** What the rest of depotsync needs to know about a certificate, read with node's X509Certificate. */
export interface CertificateInfo {
  /** Lowercase hex without leading zeros: the key of the machine table and the revocation list. */
  serial: string;
  commonName: string | null;
  /** OU=depot or OU=agent of machine certificates; null for the CA and server certificates. */
  role: MachineRole | null;
  notBefore: Date;
  notAfter: Date;
  /** The issuer's distinguished name, one `KEY=value` per line (node's format). */
  issuer: string;
  /** SHA-256 of the DER certificate, lowercase hex without colons. */
  fingerprint256: string;
}

/** `00AB`, `ab` and `0x00ab` all name the same serial: compare serials only in this form. */
export function normalizeSerial(serial: string): string {
  const hex = serial.trim().toLowerCase().replace(/^0x/, '').replace(/:/g, '');
  if (!/^[0-9a-f]{1,80}$/.test(hex)) {
    throw new DepotsyncError('bad-input', `certificate serial ${JSON.stringify(serial)} is not hexadecimal`);
  }
  const stripped = hex.replace(/^0+/, '');
  return stripped === '' ? '0' : stripped;
}

export function toX509(pemOrDer: string | Buffer | X509Certificate, what = 'certificate'): X509Certificate {
  if (pemOrDer instanceof X509Certificate) return pemOrDer;
  try {
    return new X509Certificate(pemOrDer);
  } catch (e) {
    throw new DepotsyncError('bad-certificate', `${what}: cannot parse (${(e as Error).message})`, {
      cause: e,
    });
  }
}

/** Parse node's multi-line DN ("CN=a\nOU=b"); node escapes control characters, so lines are safe to split. */
function dnField(dn: string, key: string): string | null {
  const values = dn
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
  return values.length === 1 ? (values[0] ?? null) : null;
}

export function certificateInfo(pemOrDer: string | Buffer | X509Certificate): CertificateInfo {
  const x = toX509(pemOrDer);
  const ou = dnField(x.subject, 'OU');
  return {
    serial: normalizeSerial(x.serialNumber),
    commonName: dnField(x.subject, 'CN'),
    role: isMachineRole(ou) ? ou : null,
    notBefore: new Date(x.validFrom),
    notAfter: new Date(x.validTo),
    issuer: x.issuer,
    fingerprint256: x.fingerprint256.replace(/:/g, '').toLowerCase(),
  };
}

/** True when `cert` names `ca` as its issuer and carries a valid signature by the CA's key. */
export function verifyIssuedBy(
  cert: string | Buffer | X509Certificate,
  ca: string | Buffer | X509Certificate | { certPem: string },
): boolean {
  const leaf = toX509(cert);
  const issuer = toX509(typeof ca === 'object' && 'certPem' in ca ? ca.certPem : ca, 'CA certificate');
  return leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey);
}

/** Whole days of validity left (negative once expired): drives the 40-day warning and 15-day error. */
export function daysLeft(info: { notAfter: Date }, now: Date = new Date()): number {
  return Math.floor((info.notAfter.getTime() - now.getTime()) / DAY_MS);
}
