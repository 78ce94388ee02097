import { createPrivateKey, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { DepotsyncError } from '../errors.js';
import { parseCsr } from './csr.js';
import {
  generateRsaKeySync,
  nodeSigner,
  publicKeyFromPem,
  randomSerialHex,
  utf8Field,
  validity,
} from './forge-util.js';
import {
  checkDnsNames,
  checkIpAddresses,
  checkMachineName,
  checkMachineRole,
  type MachineRole,
} from './names.js';

/**
 * The master's internal certificate authority (docs/architecture.md): one self-signed RSA 3072 root that
 * issues the HTTPS server certificates of the master and the machine certificates of depots and agents.
 */
export interface CaMaterial {
  keyPem: string;
  certPem: string;
}

export interface Ca extends CaMaterial {
  readonly cert: forge.pki.Certificate;
  readonly x509: X509Certificate;
  /** subjectKeyIdentifier of the CA as a forge byte string, copied into authorityKeyIdentifier. */
  readonly keyId: string;
  readonly signer: forge.pki.rsa.PrivateKey;
}

export interface ValidityOverride {
  /** Clock for notBefore/notAfter; defaults to the system clock. */
  now?: Date;
  /** Overrides for tests (an already expired certificate) and renewals. */
  notBefore?: Date;
  notAfter?: Date;
}

export function createCa(opts: { commonName: string; validDays?: number; now?: Date }): CaMaterial {
  const { keyPem, publicKeyPem } = generateRsaKeySync(3072);
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKeyFromPem(publicKeyPem, 'CA key');
  cert.serialNumber = randomSerialHex();
  const v = validity(opts.now ?? new Date(), opts.validDays ?? 3650);
  cert.validity.notBefore = v.notBefore;
  cert.validity.notAfter = v.notAfter;
  const subject = [utf8Field('commonName', opts.commonName), utf8Field('organizationName', 'depotsync')];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    // pathlen 0: the CA issues end-entity certificates only, never another CA.
    { name: 'basicConstraints', critical: true, cA: true, pathLenConstraint: 0 },
    { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(nodeSigner(keyPem), forge.md.sha256.create());
  return { keyPem, certPem: forge.pki.certificateToPem(cert) };
}

/** Load the CA from its PEM files, checking that the key belongs to the certificate and that it is a CA. */
export function loadCa(keyPem: string, certPem: string): Ca {
  let cert: forge.pki.Certificate;
  let x509: X509Certificate;
  try {
    cert = forge.pki.certificateFromPem(certPem);
    x509 = new X509Certificate(certPem);
  } catch (e) {
    throw new DepotsyncError('bad-certificate', `CA certificate: cannot parse (${(e as Error).message})`, {
      cause: e,
    });
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new DepotsyncError('bad-certificate', `CA key: cannot parse (${(e as Error).message})`, {
      cause: e,
    });
  }
  if (!x509.ca)
    throw new DepotsyncError('bad-certificate', 'CA certificate: basicConstraints does not say CA:true');
  if (!x509.checkPrivateKey(key)) {
    throw new DepotsyncError('bad-certificate', 'CA key: does not match the CA certificate', {
      hint: 'the key and certificate files of the master CA belong to different key pairs; restore them from backup',
    });
  }
  const ski: { subjectKeyIdentifier?: string } | undefined = cert.getExtension('subjectKeyIdentifier');
  const keyId = ski?.subjectKeyIdentifier
    ? forge.util.hexToBytes(ski.subjectKeyIdentifier)
    : cert.generateSubjectKeyIdentifier().getBytes();
  return { keyPem, certPem, cert, x509, keyId, signer: nodeSigner(keyPem) };
}

interface LeafSpec extends ValidityOverride {
  publicKeyPem: string;
  subject: forge.pki.CertificateField[];
  validDays: number;
  extKeyUsage: { serverAuth?: boolean; clientAuth?: boolean };
  dnsNames: string[];
  ipAddresses: string[];
}

function signLeaf(ca: Ca, spec: LeafSpec): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKeyFromPem(spec.publicKeyPem, 'certificate key');
  cert.serialNumber = randomSerialHex();
  const v = validity(spec.now ?? new Date(), spec.validDays, spec);
  cert.validity.notBefore = v.notBefore;
  // A certificate never outlives the CA that vouches for it.
  const caNotAfter = ca.cert.validity.notAfter;
  cert.validity.notAfter = v.notAfter.getTime() > caNotAfter.getTime() ? caNotAfter : v.notAfter;
  cert.setSubject(spec.subject);
  cert.setIssuer(ca.cert.subject.attributes);
  const altNames = [
    ...spec.dnsNames.map((value) => ({ type: 2, value })),
    ...spec.ipAddresses.map((ip) => ({ type: 7, ip })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', critical: true, cA: false },
    { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', ...spec.extKeyUsage },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: ca.keyId },
    ...(altNames.length > 0 ? [{ name: 'subjectAltName', altNames }] : []),
  ]);
  cert.sign(ca.signer, forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/** A key and certificate for the master's (or a test depot's) HTTPS server: serverAuth, with SANs. */
export function issueServerCertificate(
  ca: Ca,
  opts: {
    commonName: string;
    dnsNames?: string[];
    ipAddresses?: string[];
    validDays?: number;
  } & ValidityOverride,
): { keyPem: string; certPem: string } {
  const dnsNames = checkDnsNames(opts.dnsNames ?? [], 'server certificate');
  const ipAddresses = checkIpAddresses(opts.ipAddresses ?? [], 'server certificate');
  if (dnsNames.length + ipAddresses.length === 0) {
    throw new DepotsyncError(
      'bad-input',
      `server certificate ${opts.commonName}: needs at least one DNS name or IP address`,
      {
        hint: 'clients check the host name they connect to against these names',
      },
    );
  }
  const { keyPem, publicKeyPem } = generateRsaKeySync(2048);
  const certPem = signLeaf(ca, {
    ...opts,
    publicKeyPem,
    subject: [utf8Field('commonName', opts.commonName), utf8Field('organizationalUnitName', 'server')],
    validDays: opts.validDays ?? 825,
    extKeyUsage: { serverAuth: true },
    dnsNames,
    ipAddresses,
  });
  return { keyPem, certPem };
}

export interface IssueMachineOptions extends ValidityOverride {
  machineName: string;
  role: MachineRole;
  validDays?: number;
  /**
   * Host names and addresses a depot serves agents under. Default: those the depot asked for in its CSR.
   * Agents get none: they only ever act as TLS clients.
   */
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Names no depot may claim (the master's own), so a depot certificate cannot impersonate the master. */
  reservedNames?: string[];
}

/**
 * Issue a machine certificate from an approved CSR. CN = machine name, OU = role. Every machine gets
 * clientAuth (mutual TLS to the master or a depot); depots also get serverAuth, because a depot serves its
 * agents and child depots over HTTPS with this same certificate.
 */
export function issueMachineCertificate(ca: Ca, csrPem: string, opts: IssueMachineOptions): string {
  const machineName = checkMachineName(opts.machineName, 'machine certificate');
  const role = checkMachineRole(opts.role, `machine certificate for ${machineName}`);
  // Signature, shape and name rules: a CSR whose signature does not verify was not made by the key holder.
  const csr = parseCsr(csrPem, { what: `CSR for ${machineName}` });
  if (csr.commonName !== machineName) {
    throw new DepotsyncError(
      'bad-certificate',
      `CSR for ${machineName}: its common name is ${JSON.stringify(csr.commonName)}, not ${JSON.stringify(machineName)}`,
      {
        hint: 'the request was made for another machine; enroll again from the machine itself',
      },
    );
  }
  if (csr.role !== null && csr.role !== role) {
    throw new DepotsyncError(
      'bad-certificate',
      `CSR for ${machineName}: it asks for role ${csr.role}, but the approval is for ${role}`,
    );
  }
  const validDays = opts.validDays ?? 365;
  if (!Number.isInteger(validDays) || validDays < 1 || validDays > 3650) {
    throw new DepotsyncError(
      'bad-input',
      `machine certificate: validDays must be an integer from 1 to 3650, got ${JSON.stringify(validDays)}`,
    );
  }
  let dnsNames: string[] = [];
  let ipAddresses: string[] = [];
  if (role === 'depot') {
    dnsNames = checkDnsNames(opts.dnsNames ?? csr.dnsNames, `machine certificate for ${machineName}`);
    ipAddresses = checkIpAddresses(
      opts.ipAddresses ?? csr.ipAddresses,
      `machine certificate for ${machineName}`,
    );
    const reserved = new Set((opts.reservedNames ?? []).map((n) => n.toLowerCase()));
    const taken = [...dnsNames, ...ipAddresses].find((n) => reserved.has(n.toLowerCase()));
    if (taken !== undefined) {
      // Blocks a depot from obtaining a server certificate for the master's own host name.
      throw new DepotsyncError(
        'bad-certificate',
        `CSR for ${machineName}: asks for the reserved server name ${taken}`,
      );
    }
  }
  return signLeaf(ca, {
    ...opts,
    publicKeyPem: csr.publicKeyPem,
    subject: [utf8Field('commonName', machineName), utf8Field('organizationalUnitName', role)],
    validDays,
    extKeyUsage: role === 'depot' ? { serverAuth: true, clientAuth: true } : { clientAuth: true },
    dnsNames,
    ipAddresses,
  });
}
