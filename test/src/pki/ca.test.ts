import { createPrivateKey, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createCa,
  issueMachineCertificate,
  issueServerCertificate,
  loadCa,
  type Ca,
} from '../../../src/pki/ca.js';
import { certificateInfo, normalizeSerial, verifyIssuedBy } from '../../../src/pki/cert-info.js';
import { createMachineKeyAndCsr, parseCsr } from '../../../src/pki/csr.js';
import { nodeSigner, utf8Field } from '../../../src/pki/forge-util.js';
import { expectError } from '../../helpers/errors.js';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** A CSR built by hand, for cases createMachineKeyAndCsr refuses to make. */
function handMadeCsr(keyPem: string, publicKeyPem: string, cn: string, ou?: string): string {
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  csr.setSubject([utf8Field('commonName', cn), ...(ou ? [utf8Field('organizationalUnitName', ou)] : [])]);
  csr.sign(nodeSigner(keyPem), forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

function publicKeyOf(keyPem: string): string {
  return forge.pki.publicKeyToPem(
    forge.pki.setRsaPublicKey(forge.pki.privateKeyFromPem(keyPem).n, forge.pki.privateKeyFromPem(keyPem).e),
  );
}

describe('internal CA', () => {
  let ca: Ca;
  let otherCa: Ca;
  let agent: { keyPem: string; csrPem: string };
  let depot: { keyPem: string; csrPem: string };

  beforeAll(() => {
    const m = createCa({ commonName: 'depotsync test CA' });
    ca = loadCa(m.keyPem, m.certPem);
    const o = createCa({ commonName: 'someone else' });
    otherCa = loadCa(o.keyPem, o.certPem);
    agent = createMachineKeyAndCsr({ machineName: 'pc-0042_eu', role: 'agent' });
    depot = createMachineKeyAndCsr({
      machineName: 'depot-paris',
      role: 'depot',
      dnsNames: ['depot-paris.example'],
      ipAddresses: ['10.1.2.3'],
    });
  });

  it('makes a self-signed CA: CA:true pathlen 0, keyCertSign+cRLSign, SKI', () => {
    const x = new X509Certificate(ca.certPem);
    expect(x.ca).toBe(true);
    expect(x.checkIssued(x)).toBe(true);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
    const f = forge.pki.certificateFromPem(ca.certPem);
    expect(f.getExtension('basicConstraints')).toMatchObject({
      cA: true,
      pathLenConstraint: 0,
      critical: true,
    });
    expect(f.getExtension('keyUsage')).toMatchObject({
      keyCertSign: true,
      cRLSign: true,
      digitalSignature: false,
      critical: true,
    });
    expect(f.getExtension('subjectKeyIdentifier')).toBeTruthy();
  });

  it('loadCa refuses a key that does not belong to the certificate', () => {
    expectError(() => loadCa(otherCa.keyPem, ca.certPem), 'bad-certificate', /does not match/);
  });

  it('issues an agent certificate: CN, OU=agent, clientAuth only, random positive 128-bit serial', () => {
    const pem = issueMachineCertificate(ca, agent.csrPem, { machineName: 'pc-0042_eu', role: 'agent' });
    const info = certificateInfo(pem);
    expect(info).toMatchObject({ commonName: 'pc-0042_eu', role: 'agent' });
    expect(info.serial).toMatch(/^[1-9a-f][0-9a-f]{0,31}$/);
    expect(info.serial.length).toBeGreaterThanOrEqual(30);
    const x = new X509Certificate(pem);
    expect(x.keyUsage).toEqual([CLIENT_AUTH]);
    expect(x.subjectAltName).toBeUndefined();
    expect(x.ca).toBe(false);
    expect(verifyIssuedBy(pem, ca)).toBe(true);
    expect(verifyIssuedBy(pem, otherCa)).toBe(false);
    expect(Math.round((info.notAfter.getTime() - Date.now()) / 86_400_000)).toBe(365);
    // A second certificate for the same CSR gets a different serial.
    const again = certificateInfo(
      issueMachineCertificate(ca, agent.csrPem, { machineName: 'pc-0042_eu', role: 'agent' }),
    );
    expect(again.serial).not.toBe(info.serial);
  });

  it('issues a depot certificate with clientAuth and serverAuth and the SANs of its CSR', () => {
    const pem = issueMachineCertificate(ca, depot.csrPem, {
      machineName: 'depot-paris',
      role: 'depot',
      validDays: 30,
    });
    const x = new X509Certificate(pem);
    expect(new Set(x.keyUsage)).toEqual(new Set([SERVER_AUTH, CLIENT_AUTH]));
    expect(x.subjectAltName).toBe('DNS:depot-paris.example, IP Address:10.1.2.3');
    expect(certificateInfo(pem).role).toBe('depot');
    expect(x.checkHost('depot-paris.example')).toBe('depot-paris.example');
  });

  it('refuses a depot CSR that asks for a reserved (master) name', () => {
    expectError(
      () =>
        issueMachineCertificate(ca, depot.csrPem, {
          machineName: 'depot-paris',
          role: 'depot',
          reservedNames: ['DEPOT-PARIS.example'],
        }),
      'bad-certificate',
      /reserved server name depot-paris.example/,
    );
  });

  it('refuses a CSR whose common name is not the machine being approved', () => {
    expectError(
      () => issueMachineCertificate(ca, agent.csrPem, { machineName: 'pc-0043', role: 'agent' }),
      'bad-certificate',
      /CSR for pc-0043: its common name is "pc-0042_eu", not "pc-0043"/,
    );
  });

  it('refuses a CSR asking for another role than the approval', () => {
    expectError(
      () => issueMachineCertificate(ca, agent.csrPem, { machineName: 'pc-0042_eu', role: 'depot' }),
      'bad-certificate',
      /asks for role agent/,
    );
  });

  it('refuses a CSR whose subject bytes were altered after signing', () => {
    const der = Buffer.from(
      forge.asn1
        .toDer(forge.pki.certificationRequestToAsn1(forge.pki.certificationRequestFromPem(agent.csrPem)))
        .getBytes(),
      'binary',
    );
    const at = der.indexOf(Buffer.from('pc-0042_eu'));
    expect(at).toBeGreaterThan(0);
    der.write('pc-0043_eu', at, 'latin1');
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der
      .toString('base64')
      .match(/.{1,64}/g)
      ?.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    expectError(
      () => issueMachineCertificate(ca, tampered, { machineName: 'pc-0043_eu', role: 'agent' }),
      'bad-certificate',
      /signature does not verify/,
    );
  });

  it('refuses a CSR whose public key was swapped for another', () => {
    const csr = forge.pki.certificationRequestFromPem(agent.csrPem);
    csr.publicKey = forge.pki.publicKeyFromPem(publicKeyOf(depot.keyPem));
    // Re-encode the request info with the new key but keep the original signature.
    csr.certificationRequestInfo = forge.pki.getCertificationRequestInfo(csr);
    const swapped = forge.pki.certificationRequestToPem(csr);
    expect(swapped).not.toBe(agent.csrPem);
    expectError(() => parseCsr(swapped), 'bad-certificate', /signature does not verify/);
  });

  it('parses a CSR: name, role, SANs, public-key fingerprint', () => {
    const p = parseCsr(depot.csrPem);
    expect(p).toMatchObject({
      commonName: 'depot-paris',
      role: 'depot',
      dnsNames: ['depot-paris.example'],
      ipAddresses: ['10.1.2.3'],
    });
    expect(p.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(parseCsr(depot.csrPem).fingerprint).toBe(p.fingerprint);
  });

  it('refuses oversized, non-PEM and badly named CSRs', () => {
    expectError(() => parseCsr(agent.csrPem, { maxBytes: 100 }), 'too-large', /exceeds the limit of 100/);
    expectError(() => parseCsr('hello'), 'bad-certificate', /not a PEM/);
    expectError(() => parseCsr(ca.certPem), 'bad-certificate', /not a PEM "CERTIFICATE REQUEST"/);
    const pub = publicKeyOf(agent.keyPem);
    expectError(
      () => parseCsr(handMadeCsr(agent.keyPem, pub, '.hidden')),
      'bad-certificate',
      /machine name "\.hidden" is not allowed/,
    );
    expectError(() => parseCsr(handMadeCsr(agent.keyPem, pub, 'a/b')), 'bad-certificate', /not allowed/);
    expectError(
      () => parseCsr(handMadeCsr(agent.keyPem, pub, 'x'.repeat(65))),
      'bad-certificate',
      /not allowed/,
    );
    expectError(
      () => parseCsr(handMadeCsr(agent.keyPem, pub, 'pc1', 'admin')),
      'bad-certificate',
      /role \(OU\) must be "depot" or "agent"/,
    );
    expect(parseCsr(handMadeCsr(agent.keyPem, pub, 'pc1')).role).toBeNull();
    expectError(
      () => createMachineKeyAndCsr({ machineName: '..', role: 'agent' }),
      'bad-certificate',
      /not allowed/,
    );
  });

  it('issues server certificates that name the host and carry serverAuth', () => {
    const s = issueServerCertificate(ca, {
      commonName: 'master',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1', '::1'],
    });
    const x = new X509Certificate(s.certPem);
    expect(x.keyUsage).toEqual([SERVER_AUTH]);
    expect(x.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x.checkHost('localhost')).toBe('localhost');
    expect(x.checkPrivateKey(createPrivateKey(s.keyPem))).toBe(true);
    expectError(
      () => issueServerCertificate(ca, { commonName: 'm' }),
      'bad-input',
      /at least one DNS name or IP address/,
    );
  });

  it('never issues past the CA expiry, and accepts validity overrides', () => {
    const past = issueMachineCertificate(ca, agent.csrPem, {
      machineName: 'pc-0042_eu',
      role: 'agent',
      notBefore: new Date('2020-01-01T00:00:00Z'),
      notAfter: new Date('2020-02-01T00:00:00Z'),
    });
    expect(certificateInfo(past).notAfter.toISOString()).toBe('2020-02-01T00:00:00.000Z');
    const long = issueMachineCertificate(ca, agent.csrPem, {
      machineName: 'pc-0042_eu',
      role: 'agent',
      validDays: 3650,
      now: new Date(Date.now() + 3000 * 86_400_000),
    });
    expect(certificateInfo(long).notAfter.getTime()).toBe(
      new X509Certificate(ca.certPem).validToDate?.getTime() ??
        new Date(new X509Certificate(ca.certPem).validTo).getTime(),
    );
  });

  it('normalises serials so 00AB and ab are the same', () => {
    expect(normalizeSerial('00AB')).toBe('ab');
    expect(normalizeSerial('0x00ab')).toBe('ab');
    expect(normalizeSerial('0A:BC')).toBe('abc');
    expect(normalizeSerial('000')).toBe('0');
    expectError(() => normalizeSerial('xyz'), 'bad-input', /not hexadecimal/);
  });
});
