import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { isIP } from 'node:net';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { writeFileAtomic } from '../../src/fs/atomic-write.js';
import type { Logger } from '../../src/log.js';
import { HttpError } from '../../src/net/http-error.js';
import { createMachineKeyAndCsr } from '../../src/pki/csr.js';
import {
  MAX_ENROLL_BODY_BYTES,
  parseEnrollReply,
  type EnrollReply,
  type EnrollRequest,
} from '../../src/wire/enroll.js';
import { caFingerprintOf, checkEnrollReply, normalizeFingerprint } from '../../src/pki/enroll-reply.js';
import type { DepotLayout } from '../layout.js';
import { firstContact, type FirstContact } from './first-contact.js';

/** D/enroll.json while the master operator has not approved the depot yet. */
export interface PendingEnrollment {
  request: string;
  name: string;
  masterUrl: string;
  /** Several masters, the preferred (masterUrl) first; absent with one. */
  masterUrls?: string[];
  requestedAt: string;
  /** Hex SHA-256 of the CA certificate the operator told us to expect, if any. */
  caFingerprint?: string;
}

export interface EnrollOptions {
  layout: DepotLayout;
  name: string;
  /** The master, or several masters of one catalog (the preferred first). */
  masterUrl: string | readonly string[];
  hosts: string[];
  token?: string | undefined;
  /** Where this depot serves agents (goes into the master's depot directory). */
  url?: string | undefined;
  /** The master's CA certificate, if the operator copied it out of band (verifies the first contact). */
  caPem?: string | undefined;
  caFingerprint?: string | undefined;
  log: Logger;
}

const REQUEST_ID = /^[A-Za-z0-9_-]{1,128}$/;

export { normalizeFingerprint } from '../../src/pki/enroll-reply.js';

function csrPath(layout: DepotLayout): string {
  return `${layout.tlsDir}/depot.csr`;
}

/** The depot's key and CSR: made once (the private key never leaves D/tls, mode 0600), reused on retries. */
async function keyAndCsr(o: EnrollOptions): Promise<{ keyPem: string; csrPem: string }> {
  const { layout } = o;
  if (existsSync(layout.key) && existsSync(csrPath(layout))) {
    return { keyPem: readFileSync(layout.key, 'utf8'), csrPem: readFileSync(csrPath(layout), 'utf8') };
  }
  const dnsNames = o.hosts.filter((h) => isIP(h) === 0);
  const ipAddresses = o.hosts.filter((h) => isIP(h) !== 0);
  const made = createMachineKeyAndCsr({ machineName: o.name, role: 'depot', dnsNames, ipAddresses });
  await mkdir(layout.tlsDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(layout.key, made.keyPem, { mode: 0o600 });
  await writeFileAtomic(csrPath(layout), made.csrPem);
  return made;
}

/**
 * Check an approved reply before installing it: the CA is a CA (and the one the operator pinned, if
 * any), and the certificate is for this depot's own key, name and role, issued by that CA. Blocks a
 * reply that would make the depot present someone else's identity or trust an unrelated issuer.
 */
export async function installCertificate(
  layout: DepotLayout,
  reply: EnrollReply,
  expect: { name: string; keyPem: string; caPem?: string | undefined; caFingerprint?: string | undefined },
): Promise<{ caFingerprint: string; notAfter: string }> {
  const pinned = expect.caPem ? caFingerprintOf(expect.caPem) : expect.caFingerprint;
  const ok = checkEnrollReply(reply, {
    name: expect.name,
    role: 'depot',
    keyPem: expect.keyPem,
    caFingerprint: pinned,
  });
  await writeFileAtomic(layout.caCert, ok.caPem);
  await writeFileAtomic(layout.cert, ok.certPem);
  try {
    unlinkSync(layout.enrollment);
  } catch {
    // not pending
  }
  return { caFingerprint: ok.caFingerprint, notAfter: ok.notAfter };
}

export type EnrollOutcome =
  { state: 'approved'; caFingerprint: string; notAfter: string } | { state: 'pending'; request: string };

/**
 * `POST /v1/enroll` with the depot's CSR (and token): installed at once if
 * approved, else recorded as pending.
 */
export async function requestEnrollment(o: EnrollOptions): Promise<EnrollOutcome> {
  const { keyPem, csrPem } = await keyAndCsr(o);
  const body: EnrollRequest = { name: o.name, role: 'depot', csr: csrPem };
  if (o.token) body.token = o.token;
  if (o.url) body.url = o.url;
  const contact = firstContact(o.masterUrl, o.caPem);
  try {
    const res = await contact
      .postJson('/v1/enroll', body, MAX_ENROLL_BODY_BYTES, 'enrollment')
      .catch((e: unknown) => Promise.reject(explainEnroll(e, o.name)));
    const reply = parseEnrollReply(res.body, 'enrollment');
    if (reply.state === 'approved')
      return {
        state: 'approved',
        ...(await installCertificate(o.layout, reply, {
          name: o.name,
          keyPem,
          caPem: o.caPem,
          caFingerprint: o.caFingerprint,
        })),
      };
    if (!REQUEST_ID.test(reply.request))
      throw new DepotsyncError(
        'bad-input',
        `enrollment: the request id ${JSON.stringify(reply.request.slice(0, 40))} is malformed`,
      );
    const masters = typeof o.masterUrl === 'string' ? [o.masterUrl] : [...o.masterUrl];
    const pending: PendingEnrollment = {
      request: reply.request,
      name: o.name,
      masterUrl: masters[0]!,
      ...(masters.length > 1 ? { masterUrls: masters } : {}),
      requestedAt: new Date().toISOString(),
    };
    const fp = o.caPem ? caFingerprintOf(o.caPem) : o.caFingerprint;
    if (fp) pending.caFingerprint = normalizeFingerprint(fp);
    await writeFileAtomic(o.layout.enrollment, `${JSON.stringify(pending, null, 2)}\n`);
    o.log.info({ request: reply.request }, 'enrollment waiting for approval by the master operator');
    return { state: 'pending', request: reply.request };
  } finally {
    contact.close();
  }
}

/** Ask the master whether a pending enrollment was approved; installs the certificate when it was. */
export async function pollEnrollment(
  layout: DepotLayout,
  log: Logger,
  contactFor: (urls: readonly string[]) => FirstContact = (urls) => firstContact(urls, undefined),
): Promise<EnrollOutcome> {
  let pending: PendingEnrollment;
  try {
    pending = JSON.parse(readFileSync(layout.enrollment, 'utf8')) as PendingEnrollment;
  } catch (e) {
    throw fromSystemError(e, `pending enrollment ${layout.enrollment}`);
  }
  if (!REQUEST_ID.test(String(pending.request)))
    throw new DepotsyncError('bad-input', `pending enrollment ${layout.enrollment}: malformed request id`);
  const contact = contactFor(
    Array.isArray(pending.masterUrls) && pending.masterUrls.length ? pending.masterUrls : [pending.masterUrl],
  );
  try {
    const res = await contact
      .get(`/v1/enroll/${pending.request}`, MAX_ENROLL_BODY_BYTES, 'enrollment status')
      .catch((e: unknown) => Promise.reject(explainEnroll(e, pending.name)));
    const reply = parseEnrollReply(res.body, 'enrollment status');
    if (reply.state !== 'approved') return { state: 'pending', request: pending.request };
    const out = await installCertificate(layout, reply, {
      name: pending.name,
      keyPem: readFileSync(layout.key, 'utf8'),
      caFingerprint: pending.caFingerprint,
    });
    log.info({ name: pending.name }, 'enrollment approved; certificate installed');
    return { state: 'approved', ...out };
  } finally {
    contact.close();
  }
}

function explainEnroll(e: unknown, name: string): unknown {
  if (e instanceof HttpError && (e.status === 403 || e.status === 401)) {
    return new DepotsyncError(
      'forbidden',
      `enrollment of depot ${name} refused by the master: ${e.serverCode ?? e.status} (${e.message})`,
      {
        hint: 'the token is wrong or used, or the operator blocked this machine; ask for a new token',
        cause: e,
      },
    );
  }
  return e;
}
