import { createPrivateKey, X509Certificate } from 'node:crypto';
import { DepotsyncError } from '../errors.js';
import { certificateInfo, toX509, verifyIssuedBy } from './cert-info.js';
import type { MachineRole } from './names.js';

/**
 * The machine side of enrollment, shared by depots and agents: checking an approved reply (decoded by
 * src/wire/enroll.ts) before anything of it is installed.
 */
export function normalizeFingerprint(hex: string): string {
  return hex.toLowerCase().replace(/[:\s]/g, '');
}

/**
 * Check an approved enrollment reply before installing it (role-generic; the depot's installer does
 * the same for its role): the CA is a CA and, if pinned, the pinned one; the certificate names this
 * machine and role, is for this machine's own key, and was issued by that CA. Blocks a reply that
 * would make the machine present someone else's identity or trust an unrelated issuer.
 */
export function checkEnrollReply(
  reply: { certificate?: string; caCertificate?: string },
  expect: { name: string; role: MachineRole; keyPem: string; caFingerprint?: string | undefined },
): { caPem: string; certPem: string; caFingerprint: string; notAfter: string } {
  const what = `enrollment reply for ${expect.role} ${expect.name}`;
  if (!reply.certificate || !reply.caCertificate)
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: approved but without certificate and CA certificate`,
    );
  const ca = toX509(reply.caCertificate, `${what}: CA certificate`);
  if (!ca.ca) throw new DepotsyncError('bad-certificate', `${what}: the CA certificate is not a CA`);
  const caFingerprint = normalizeFingerprint(ca.fingerprint256);
  if (expect.caFingerprint && normalizeFingerprint(expect.caFingerprint) !== caFingerprint) {
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: the CA certificate (SHA-256 ${caFingerprint}) is not the one this ${expect.role} was told to trust (${normalizeFingerprint(expect.caFingerprint)})`,
      {
        hint: 'something between this machine and the master answered the enrollment; check the master URL and the network',
      },
    );
  }
  const info = certificateInfo(reply.certificate);
  if (info.commonName !== expect.name || info.role !== expect.role) {
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: the certificate is for ${info.commonName ?? '?'} (${info.role ?? 'no role'}), not ${expect.role} ${expect.name}`,
    );
  }
  if (!toX509(reply.certificate).checkPrivateKey(createPrivateKey(expect.keyPem))) {
    throw new DepotsyncError('bad-certificate', `${what}: the certificate is not for this machine's key`, {
      hint: 'enroll again from this machine',
    });
  }
  if (!verifyIssuedBy(reply.certificate, reply.caCertificate)) {
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: the certificate was not issued by the CA certificate in the reply`,
    );
  }
  return {
    caPem: reply.caCertificate,
    certPem: reply.certificate,
    caFingerprint,
    notAfter: info.notAfter.toISOString(),
  };
}

/** The CA certificate of a PEM file given out of band (`--ca FILE`), as its normalised fingerprint. */
export function caFingerprintOf(pem: string): string {
  return normalizeFingerprint(new X509Certificate(pem).fingerprint256);
}
