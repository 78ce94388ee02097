import { existsSync, readFileSync } from 'node:fs';
import { mkdir, unlink } from 'node:fs/promises';
import { DepotsyncError, fromSystemError } from '../src/errors.js';
import { writeFileAtomic } from '../src/fs/atomic-write.js';
import type { Logger } from '../src/log.js';
import type { FirstContact } from '../src/net/first-contact.js';
import { HttpError } from '../src/net/http-error.js';
import { createMachineKeyAndCsr } from '../src/pki/csr.js';
import {
  MAX_ENROLL_BODY_BYTES,
  parseEnrollReply,
  type EnrollReply,
  type EnrollRequest,
} from '../src/wire/enroll.js';
import { checkEnrollReply, normalizeFingerprint } from '../src/pki/enroll-reply.js';

export { caFingerprintOf, checkEnrollReply, normalizeFingerprint } from '../src/pki/enroll-reply.js';
import type { AgentLayout } from './layout.js';

/** A.enroll.json while the master operator has not approved the agent yet. */
export interface PendingEnrollment {
  request: string;
  name: string;
  requestedAt: string;
  /** Hex SHA-256 of the CA certificate the operator told us to expect, if any. */
  caFingerprint?: string;
}

export type EnrollOutcome =
  { state: 'approved'; caFingerprint: string; notAfter: string } | { state: 'pending'; request: string };

const REQUEST_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** The agent's key and CSR: made once (the private key never leaves A/keys, mode 0600), reused on retries. */
async function keyAndCsr(layout: AgentLayout, name: string): Promise<{ keyPem: string; csrPem: string }> {
  if (existsSync(layout.key) && existsSync(layout.csr)) {
    return { keyPem: readFileSync(layout.key, 'utf8'), csrPem: readFileSync(layout.csr, 'utf8') };
  }
  const made = createMachineKeyAndCsr({ machineName: name, role: 'agent' });
  await mkdir(layout.keysDir, { recursive: true, mode: 0o700 }).catch((e: unknown) =>
    Promise.reject(fromSystemError(e, layout.keysDir)),
  );
  await writeFileAtomic(layout.key, made.keyPem, { mode: 0o600 });
  await writeFileAtomic(layout.csr, made.csrPem);
  return made;
}

async function install(
  layout: AgentLayout,
  reply: EnrollReply,
  expect: { name: string; keyPem: string; caFingerprint?: string | undefined },
): Promise<EnrollOutcome> {
  const ok = checkEnrollReply(reply, { ...expect, role: 'agent' });
  await writeFileAtomic(layout.caCert, ok.caPem);
  await writeFileAtomic(layout.cert, ok.certPem);
  await unlink(layout.enrollment).catch(() => undefined);
  return { state: 'approved', caFingerprint: ok.caFingerprint, notAfter: ok.notAfter };
}

function explain(e: unknown, name: string): unknown {
  if (e instanceof HttpError && (e.status === 403 || e.status === 401)) {
    return new DepotsyncError(
      'forbidden',
      `enrollment of agent ${name} refused by the master: ${e.serverCode ?? e.status} (${e.message})`,
      {
        hint: 'the token is wrong or used, or the operator blocked this machine; ask for a new token',
        cause: e,
      },
    );
  }
  return e;
}

/**
 * `POST /v1/enroll` with the agent's CSR (and token): installed at once if
 * approved, else recorded as pending.
 */
export async function requestEnrollment(o: {
  layout: AgentLayout;
  name: string;
  contact: FirstContact;
  token?: string | undefined;
  site?: string | undefined;
  caFingerprint?: string | undefined;
  log: Logger;
}): Promise<EnrollOutcome> {
  const { keyPem, csrPem } = await keyAndCsr(o.layout, o.name);
  const body: EnrollRequest = { name: o.name, role: 'agent', csr: csrPem };
  if (o.token) body.token = o.token;
  if (o.site) body.site = o.site;
  const res = await o.contact
    .postJson('/v1/enroll', body, MAX_ENROLL_BODY_BYTES, 'enrollment')
    .catch((e: unknown) => Promise.reject(explain(e, o.name)));
  const reply = parseEnrollReply(res.body, 'enrollment');
  if (reply.state === 'approved')
    return install(o.layout, reply, { name: o.name, keyPem, caFingerprint: o.caFingerprint });
  if (!REQUEST_ID.test(reply.request))
    throw new DepotsyncError(
      'bad-input',
      `enrollment: the request id ${JSON.stringify(reply.request.slice(0, 40))} is malformed`,
    );
  const pending: PendingEnrollment = {
    request: reply.request,
    name: o.name,
    requestedAt: new Date().toISOString(),
  };
  if (o.caFingerprint) pending.caFingerprint = normalizeFingerprint(o.caFingerprint);
  await writeFileAtomic(o.layout.enrollment, `${JSON.stringify(pending, null, 2)}\n`);
  o.log.info({ request: reply.request }, 'enrollment waiting for approval by the master operator');
  return { state: 'pending', request: reply.request };
}

/** Ask the master whether a pending enrollment was approved; installs the certificate when it was. */
export async function pollEnrollment(o: {
  layout: AgentLayout;
  contact: FirstContact;
  log: Logger;
}): Promise<EnrollOutcome> {
  let pending: PendingEnrollment;
  try {
    pending = JSON.parse(readFileSync(o.layout.enrollment, 'utf8')) as PendingEnrollment;
  } catch (e) {
    throw fromSystemError(e, `pending enrollment ${o.layout.enrollment}`);
  }
  if (!REQUEST_ID.test(String(pending.request)))
    throw new DepotsyncError('bad-input', `pending enrollment ${o.layout.enrollment}: malformed request id`);
  const res = await o.contact
    .get(`/v1/enroll/${pending.request}`, MAX_ENROLL_BODY_BYTES, 'enrollment status')
    .catch((e: unknown) => Promise.reject(explain(e, pending.name)));
  const reply = parseEnrollReply(res.body, 'enrollment status');
  if (reply.state !== 'approved') return { state: 'pending', request: pending.request };
  const out = await install(o.layout, reply, {
    name: pending.name,
    keyPem: readFileSync(o.layout.key, 'utf8'),
    caFingerprint: pending.caFingerprint,
  });
  o.log.info({ name: pending.name }, 'enrollment approved; certificate installed');
  return out;
}
