import {
  checkServerIdentity,
  type DetailedPeerCertificate,
  type PeerCertificate,
  type SecureContextOptions,
  type TLSSocket,
  type TlsOptions,
} from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { certificateInfo, toX509 } from '../pki/cert-info.js';
import type { MachineRole } from '../pki/names.js';

/**
 * TLS settings shared by every depotsync HTTPS server and client (docs/http.md: TLS 1.2+, AEAD only).
 *
 * TLS 1.2: ECDHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305 only; CBC suites
 * (Lucky13, POODLE-style padding oracles) and static-RSA key exchange are never offered.
 * TLS 1.3: all three standard suites, every one of them AEAD. They must be listed: a cipher string without
 * `TLS_…` names makes node cap the connection at TLS 1.2.
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
];
export const TLS13_SUITES = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
];
export const CIPHERS = [...TLS13_SUITES, ...TLS12_CIPHERS].join(':');

/** Options for a client or server TLS context: protocol floor and cipher list. */
export function tlsBaseOptions(): Pick<SecureContextOptions, 'minVersion' | 'ciphers'> {
  return { minVersion: 'TLSv1.2', ciphers: CIPHERS };
}

/**
 * Options for `https.createServer`. The server asks every client for a certificate but does not reject
 * the handshake without one: the first middleware answers 401/403 with the reason (no certificate,
 * unknown issuer, expired, revoked, …) instead of a reset socket. Public routes (`/healthz`, enrollment,
 * root metadata) work without a certificate for the same reason.
 */
export function tlsServerOptions(opts: { keyPem: string; certPem: string; caPem: string }): TlsOptions {
  return {
    ...tlsBaseOptions(),
    key: opts.keyPem,
    cert: opts.certPem,
    ca: opts.caPem,
    requestCert: true,
    rejectUnauthorized: false,
    honorCipherOrder: true,
  };
}

interface CertFields {
  serial: string;
  commonName: string;
  role: MachineRole | null;
  notBefore: Date;
  notAfter: Date;
  fingerprint256: string;
}

/** Who is on the other end of a TLS connection, as far as the TLS layer can tell. */
export type PeerIdentity =
  | { kind: 'none' }
  | { kind: 'untrusted'; reason: string }
  | ({ kind: 'expired' } & CertFields)
  | ({ kind: 'cert' } & CertFields);

const NOT_TRUSTED_REASONS: Record<string, string> = {
  UNABLE_TO_GET_ISSUER_CERT: 'issuer unknown',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'issuer unknown',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'issuer unknown',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in chain',
  CERT_SIGNATURE_FAILURE: 'bad signature',
  CERT_NOT_YET_VALID: 'not yet valid',
  INVALID_PURPOSE: 'certificate not for client authentication',
};

/**
 * Classify the peer of a server-side TLS socket. The chain was checked by OpenSSL against the CA given
 * in `tlsServerOptions`; expiry is checked again here against the injected clock. The caller (the
 * mutual-TLS middleware) then checks the machine table and the revocation list.
 */
export function peerIdentity(socket: TLSSocket, opts: { now?: () => Date } = {}): PeerIdentity {
  let parsed = parsedPeers.get(socket);
  if (!parsed) {
    // One parse per connection, not per keep-alive request (about 3% of a busy depot's CPU). Safe
    // because the peer cannot change: renegotiation (TLS 1.2's way to present another certificate
    // mid-connection) is refused from here on.
    socket.disableRenegotiation?.();
    parsed = parsePeer(socket);
    parsedPeers.set(socket, parsed);
  }
  if (parsed.kind !== 'cert') return parsed;
  const { fields, code } = parsed;
  const now = (opts.now ?? (() => new Date()))().getTime();
  // Expired credentials are refused with their own reason, so the operator knows to renew, not re-enroll.
  if (code === 'CERT_HAS_EXPIRED' || fields.notAfter.getTime() < now) return { kind: 'expired', ...fields };
  if (fields.notBefore.getTime() > now)
    return { kind: 'untrusted', reason: `not yet valid (from ${fields.notBefore.toISOString()})` };
  return { kind: 'cert', ...fields };
}

type ParsedPeer =
  | { kind: 'none' }
  | { kind: 'untrusted'; reason: string }
  | { kind: 'cert'; fields: CertFields; code: string | undefined };
const parsedPeers = new WeakMap<TLSSocket, ParsedPeer>();

function parsePeer(socket: TLSSocket): ParsedPeer {
  const peer = socket.getPeerCertificate(true);
  if (!peer || !peer.raw || peer.raw.length === 0) return { kind: 'none' };
  const code = socket.authorizationError
    ? String((socket.authorizationError as unknown as { code?: string }).code ?? socket.authorizationError)
    : undefined;
  if (!socket.authorized && code !== 'CERT_HAS_EXPIRED') {
    const why = code ? (NOT_TRUSTED_REASONS[code] ?? code.toLowerCase().replace(/_/g, ' ')) : 'not verified';
    return { kind: 'untrusted', reason: code ? `${why} (${code})` : why };
  }
  let info;
  try {
    info = certificateInfo(peer.raw);
  } catch {
    return { kind: 'untrusted', reason: 'unparseable certificate' };
  }
  if (!info.commonName) return { kind: 'untrusted', reason: 'certificate has no common name' };
  // The earliest notAfter in the verified chain: an expired CA expires everything it issued.
  let notAfter = info.notAfter;
  for (let c = peer.issuerCertificate, depth = 0; c && c.raw && depth < 4; depth += 1) {
    const end = toX509(c.raw).validTo;
    if (new Date(end).getTime() < notAfter.getTime()) notAfter = new Date(end);
    if (c.issuerCertificate === c) break;
    c = c.issuerCertificate;
  }
  const fields: CertFields = {
    serial: info.serial,
    commonName: info.commonName,
    role: info.role,
    notBefore: info.notBefore,
    notAfter,
    fingerprint256: info.fingerprint256,
  };
  return { kind: 'cert', fields, code };
}

/**
 * A client-side `checkServerIdentity` that, after node's usual host-name check, also requires the
 * server certificate to be the machine certificate of `commonName` (CN) with role `role` (OU): a depot
 * the signed directory lists must present its own certificate, not any certificate of the CA that
 * happens to cover the host.
 */
export function machineIdentityCheck(
  commonName: string,
  role: MachineRole,
  opts: { internalCaPem?: string } = {},
): (host: string, cert: PeerCertificate) => Error | undefined {
  const internalCa = opts.internalCaPem ? new X509Certificate(opts.internalCaPem).fingerprint256 : undefined;
  return (host, cert) => {
    const hostError = checkServerIdentity(host, cert);
    if (hostError) return hostError;
    // An operator-supplied listener certificate (issued by the organisation's CA, trusted through
    // tls.caFile) names the host, not the machine: the host-name check above is what applies to it.
    if (internalCa && !issuedBy(cert, internalCa)) return undefined;
    const subject = cert.subject as { CN?: unknown; OU?: unknown } | undefined;
    if (subject?.CN !== commonName || subject?.OU !== role) {
      const got = `${typeof subject?.OU === 'string' ? subject.OU : 'machine'} ${typeof subject?.CN === 'string' ? subject.CN : '(no name)'}`;
      return Object.assign(new Error(`the server certificate belongs to ${got}, not ${role} ${commonName}`), {
        code: 'ERR_TLS_CERT_ALTNAME_INVALID',
      });
    }
    return undefined;
  };
}

/** Does the verified chain of `cert` go through the CA with this SHA-256 fingerprint? */
function issuedBy(cert: PeerCertificate, caFingerprint256: string): boolean {
  let c = (cert as DetailedPeerCertificate).issuerCertificate;
  for (let depth = 0; c && depth < 8; depth += 1) {
    if (c.fingerprint256 === caFingerprint256) return true;
    if (c.issuerCertificate === c) break;
    c = c.issuerCertificate;
  }
  return false;
}
