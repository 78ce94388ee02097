import { createHash, createPublicKey } from 'node:crypto';
import forge from 'node-forge';
import { DepotsyncError } from '../errors.js';
import { generateRsaKeySync, nodeSigner, publicKeyFromPem, utf8Field } from './forge-util.js';
import {
  checkDnsNames,
  checkIpAddresses,
  checkMachineName,
  checkMachineRole,
  isMachineRole,
  type MachineRole,
} from './names.js';

/**
 * Certificate signing requests: how a depot or agent asks the master for its machine certificate
 * (docs/architecture.md). The private key never leaves the machine; the CSR carries the public key, the
 * machine name (CN), the role (OU) and, for depots, the host names it serves agents
 * under (subjectAltName request).
 */
export interface ParsedCsr {
  commonName: string;
  /** The role asked for (OU), or null when the CSR does not say. */
  role: MachineRole | null;
  publicKeyPem: string;
  /** SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex: shown to the operator who approves. */
  fingerprint: string;
  dnsNames: string[];
  ipAddresses: string[];
}

export const CSR_DEFAULTS = {
  /** A 4096-bit RSA CSR with a few SANs is about 2 kB; anything far larger is not a CSR we made. */
  maxBytes: 16 * 1024,
  minRsaBits: 2048,
};

export function createMachineKeyAndCsr(opts: {
  machineName: string;
  role: MachineRole;
  dnsNames?: string[];
  ipAddresses?: string[];
}): { keyPem: string; csrPem: string } {
  const name = checkMachineName(opts.machineName, 'CSR');
  const role = checkMachineRole(opts.role, `CSR for ${name}`);
  const dnsNames = checkDnsNames(opts.dnsNames ?? [], `CSR for ${name}`);
  const ipAddresses = checkIpAddresses(opts.ipAddresses ?? [], `CSR for ${name}`);
  const { keyPem, publicKeyPem } = generateRsaKeySync(2048);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = publicKeyFromPem(publicKeyPem, `CSR for ${name}`);
  csr.setSubject([utf8Field('commonName', name), utf8Field('organizationalUnitName', role)]);
  const altNames = [
    ...dnsNames.map((value) => ({ type: 2, value })),
    ...ipAddresses.map((ip) => ({ type: 7, ip })),
  ];
  if (altNames.length > 0) {
    csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames }] }]);
  }
  csr.sign(nodeSigner(keyPem), forge.md.sha256.create());
  return { keyPem, csrPem: forge.pki.certificationRequestToPem(csr) };
}

const PEM_SHAPE =
  /^\s*-----BEGIN CERTIFICATE REQUEST-----\r?\n(?:[A-Za-z0-9+/=]{0,76}\r?\n)+-----END CERTIFICATE REQUEST-----\s*$/;
const ALLOWED_SIGNATURES = new Set([
  forge.pki.oids.sha256WithRSAEncryption,
  forge.pki.oids.sha384WithRSAEncryption,
  forge.pki.oids.sha512WithRSAEncryption,
]);

function bad(what: string, reason: string, hint?: string): DepotsyncError {
  return new DepotsyncError('bad-certificate', `${what}: ${reason}`, hint ? { hint } : {});
}

/** Decode an untrusted CSR (from the network or a request file) into a typed value, or fail saying why. */
export function parseCsr(pem: unknown, opts: { maxBytes?: number; what?: string } = {}): ParsedCsr {
  const what = opts.what ?? 'CSR';
  const maxBytes = opts.maxBytes ?? CSR_DEFAULTS.maxBytes;
  if (typeof pem !== 'string') throw bad(what, 'expected PEM text');
  // Size limit before parsing: blocks memory and CPU exhaustion through a huge request.
  const size = Buffer.byteLength(pem, 'utf8');
  if (size > maxBytes)
    throw new DepotsyncError('too-large', `${what}: ${size} bytes exceeds the limit of ${maxBytes}`);
  if (!PEM_SHAPE.test(pem)) throw bad(what, 'not a PEM "CERTIFICATE REQUEST" block');
  let csr: forge.pki.CertificateSigningRequest;
  try {
    csr = forge.pki.certificationRequestFromPem(pem);
  } catch (e) {
    throw bad(what, `cannot parse (${(e as Error).message})`);
  }
  if (!csr.signatureOid || !ALLOWED_SIGNATURES.has(csr.signatureOid)) {
    throw bad(
      what,
      `signature algorithm ${csr.signatureOid ?? 'unknown'} is not allowed`,
      'sign the request with RSA and SHA-256',
    );
  }
  const publicKey = csr.publicKey as forge.pki.rsa.PublicKey | null;
  if (!publicKey || typeof publicKey.n?.bitLength !== 'function') throw bad(what, 'no RSA public key');
  const bits = publicKey.n.bitLength();
  if (bits < CSR_DEFAULTS.minRsaBits)
    throw bad(what, `RSA key of ${bits} bits is too small (minimum ${CSR_DEFAULTS.minRsaBits})`);
  // Proof of possession: only the holder of the private key can sign the request for its public key.
  let verified = false;
  try {
    verified = csr.verify();
  } catch {
    verified = false;
  }
  if (!verified) {
    throw bad(
      what,
      'its signature does not verify (the request was altered or its key was swapped)',
      'make a new request on the machine',
    );
  }
  const cns = csr.subject.attributes.filter((a) => a.name === 'commonName');
  const ous = csr.subject.attributes.filter((a) => a.name === 'organizationalUnitName');
  if (cns.length !== 1) throw bad(what, `needs exactly one common name, has ${cns.length}`);
  if (ous.length > 1)
    throw bad(what, `has ${ous.length} organizational units; at most one (the role) is allowed`);
  const commonName = checkMachineName(cns[0]?.value, what);
  const ou = ous[0]?.value;
  if (ou !== undefined && !isMachineRole(ou))
    throw bad(what, `role (OU) must be "depot" or "agent", got ${JSON.stringify(ou)}`);
  const { dnsNames, ipAddresses } = requestedAltNames(csr, what);
  const publicKeyPem = forge.pki.publicKeyToPem(publicKey);
  const spki = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return {
    commonName,
    role: ou === undefined ? null : ou,
    publicKeyPem,
    fingerprint: createHash('sha256').update(spki).digest('hex'),
    dnsNames,
    ipAddresses,
  };
}

interface AltName {
  type: number;
  value?: string;
  ip?: string;
}

function requestedAltNames(
  csr: forge.pki.CertificateSigningRequest,
  what: string,
): { dnsNames: string[]; ipAddresses: string[] } {
  const attr = csr.getAttribute({ name: 'extensionRequest' }) as {
    extensions?: Array<{ name?: string; altNames?: AltName[] }>;
  } | null;
  const san = attr?.extensions?.find((e) => e.name === 'subjectAltName');
  const altNames = san?.altNames ?? [];
  if (altNames.length > 32)
    throw bad(what, `asks for ${altNames.length} alternative names; at most 32 are allowed`);
  const dns: unknown[] = [];
  const ips: unknown[] = [];
  for (const a of altNames) {
    if (a.type === 2) dns.push(a.value);
    else if (a.type === 7) ips.push(a.ip);
    else
      throw bad(what, `alternative name of type ${a.type} is not allowed (only DNS names and IP addresses)`);
  }
  return { dnsNames: checkDnsNames(dns, what), ipAddresses: checkIpAddresses(ips, what) };
}
