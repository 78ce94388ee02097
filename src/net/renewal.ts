import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DepotsyncError, fromSystemError, isDepotsyncError } from '../errors.js';
import { fsyncDir, writeFileAtomic } from '../fs/atomic-write.js';
import type { Logger } from '../log.js';
import type { HttpClient } from './client.js';
import { HttpError } from './http-error.js';
import {
  decodeRenewReply,
  decodeRenewState,
  MAX_RENEW_BODY_BYTES,
  type RenewRequest,
  type RenewState,
} from '../wire/renew.js';
import { certificateInfo } from '../pki/cert-info.js';
import { createMachineKeyAndCsr } from '../pki/csr.js';
import { caFingerprintOf, checkEnrollReply } from '../pki/enroll-reply.js';
import type { MachineRole } from '../pki/names.js';

/**
 * Machine-side certificate renewal, shared by depots and agents:
 *  - the rule: renew once `fraction` (two thirds) of the certificate's lifetime has passed, or when the
 *    master says an operator asked for it (`GET /v1/renew`, `depotsync master renew MACHINE`);
 *  - the exchange: new key, new CSR, `POST /v1/renew` over mutual TLS with the CURRENT certificate;
 *  - the install: key and certificate replaced together, crash-safe (`installCredentials`).
 * The old certificate is not revoked: it stays valid at the master and the depots until it expires, so
 * a machine that crashed before installing the new one keeps working and simply renews again.
 */
export const RENEWAL_DEFAULTS = {
  /** Share of the lifetime after which a certificate is renewed. */
  fraction: 2 / 3,
};

export interface Lifetime {
  notBefore: Date;
  notAfter: Date;
}

/** The moment a certificate becomes due for renewal: notBefore + fraction × lifetime. */
export function renewalAt(cert: Lifetime, fraction = RENEWAL_DEFAULTS.fraction): Date {
  if (!(fraction > 0 && fraction < 1))
    throw new DepotsyncError(
      'bad-input',
      `renewal fraction must be between 0 and 1 (exclusive), got ${fraction}`,
    );
  const start = cert.notBefore.getTime();
  return new Date(start + Math.floor((cert.notAfter.getTime() - start) * fraction));
}

/** True once two thirds (by default) of the certificate's lifetime have passed at `now`. */
export function renewalDue(cert: Lifetime, now: Date, fraction = RENEWAL_DEFAULTS.fraction): boolean {
  return now.getTime() >= renewalAt(cert, fraction).getTime();
}

/** Where a machine keeps its key and certificate (and optionally its CSR). */
export interface CredentialFiles {
  key: string;
  cert: string;
  csr?: string;
}

const nextOf = (path: string) => `${path}.next`;

/**
 * Replace key and certificate so that a crash at any instant leaves a matching pair:
 *   1. `key.next` (0600), then `cert.next`, each written atomically; `cert.next` existing is the
 *      commit point;
 *   2. rename `key.next` over the key, then `cert.next` over the certificate, fsync the folder.
 * `recoverCredentials` finishes step 2 (or drops an uncommitted step 1) at the next start.
 */
export async function installCredentials(
  files: CredentialFiles,
  creds: { keyPem: string; certPem: string; csrPem?: string },
): Promise<void> {
  await writeFileAtomic(nextOf(files.key), creds.keyPem, { mode: 0o600 });
  await writeFileAtomic(nextOf(files.cert), creds.certPem);
  try {
    await rename(nextOf(files.key), files.key);
    await rename(nextOf(files.cert), files.cert);
    await fsyncDir(dirname(files.cert));
    if (dirname(files.key) !== dirname(files.cert)) await fsyncDir(dirname(files.key));
  } catch (e) {
    throw fromSystemError(e, `install renewed certificate ${files.cert}`);
  }
  if (files.csr && creds.csrPem) await writeFileAtomic(files.csr, creds.csrPem);
}

/**
 * Finish or drop a renewal interrupted by a crash (synchronous: called before the credentials are
 * read). Returns what it did. A committed pair is completed only if the certificate is for the key.
 */
export function recoverCredentials(files: CredentialFiles): 'none' | 'completed' | 'discarded' {
  const keyNext = nextOf(files.key);
  const certNext = nextOf(files.cert);
  const drop = (p: string) => {
    try {
      unlinkSync(p);
    } catch {
      // already gone
    }
  };
  if (!existsSync(certNext)) {
    if (!existsSync(keyNext)) return 'none';
    drop(keyNext); // crashed before the commit point: the old pair is intact
    return 'discarded';
  }
  try {
    const keyPem = readFileSync(existsSync(keyNext) ? keyNext : files.key, 'utf8');
    if (!new X509Certificate(readFileSync(certNext, 'utf8')).checkPrivateKey(createPrivateKey(keyPem)))
      throw new Error('key mismatch');
  } catch {
    drop(certNext);
    drop(keyNext);
    return 'discarded';
  }
  try {
    if (existsSync(keyNext)) renameSync(keyNext, files.key);
    renameSync(certNext, files.cert);
  } catch (e) {
    throw fromSystemError(e, `finish the interrupted certificate renewal of ${files.cert}`);
  }
  return 'completed';
}

export interface RenewOptions {
  /** Mutual TLS to the master with the machine's current certificate. */
  master: Pick<HttpClient, 'getJson' | 'postJson'> & { baseUrl: URL };
  name: string;
  role: MachineRole;
  files: CredentialFiles;
  /**
   * The machine's current certificate and the master's CA (the new certificate must chain to the same CA).
   */
  certPem: string;
  caPem: string;
  /** Server names a depot asks for again (its certificate serves agents under them). */
  dnsNames?: string[];
  ipAddresses?: string[];
  now: Date;
  log: Logger;
  fraction?: number;
}

export type RenewOutcome =
  | {
      renewed: true;
      reason: 'due' | 'requested';
      serial: string;
      notAfter: string;
      keyPem: string;
      certPem: string;
    }
  | { renewed: false; reason: 'not-due'; renewAt: string };

/**
 * The check a depot runs before each sync and an agent at the start of each fetch: renew when due by
 * age, else ask the master whether an operator requested it. Errors (the master unreachable, or
 * refusing a blocked or revoked machine) are thrown with the reason; the caller logs them and goes on
 * with the current certificate, which is still valid.
 */
export async function renewIfDue(o: RenewOptions): Promise<RenewOutcome> {
  const current = certificateInfo(o.certPem);
  const at = renewalAt(current, o.fraction);
  let reason: 'due' | 'requested' | undefined = o.now.getTime() >= at.getTime() ? 'due' : undefined;
  if (!reason) {
    const state = await askMaster(o);
    if (state.renewRequested) reason = 'requested';
  }
  if (!reason) return { renewed: false, reason: 'not-due', renewAt: at.toISOString() };
  const out = await renewNow(o);
  o.log.info(
    { reason, serial: out.serial, previous: current.serial, notAfter: out.notAfter },
    'machine certificate renewed',
  );
  return { renewed: true, reason, ...out };
}

async function askMaster(o: RenewOptions): Promise<RenewState> {
  try {
    return decodeRenewState(
      await o.master.getJson('/v1/renew', { maxBytes: MAX_RENEW_BODY_BYTES, what: 'renewal state' }),
    );
  } catch (e) {
    throw explainRenew(e, o);
  }
}

/** New key and CSR, `POST /v1/renew`, check the reply, install. Returns the new credentials. */
export async function renewNow(
  o: RenewOptions,
): Promise<{ serial: string; notAfter: string; keyPem: string; certPem: string }> {
  const made = createMachineKeyAndCsr({
    machineName: o.name,
    role: o.role,
    ...(o.dnsNames ? { dnsNames: o.dnsNames } : {}),
    ...(o.ipAddresses ? { ipAddresses: o.ipAddresses } : {}),
  });
  const body: RenewRequest = { csr: made.csrPem };
  let raw: unknown;
  try {
    raw = await o.master.postJson('/v1/renew', body, {
      maxBytes: MAX_RENEW_BODY_BYTES,
      what: 'certificate renewal',
    });
  } catch (e) {
    throw explainRenew(e, o);
  }
  const reply = decodeRenewReply(raw);
  let ok;
  try {
    // Same checks as an enrollment reply, with the CA pinned to the one this machine already trusts:
    // blocks a reply that would install someone else's identity or an unrelated issuer.
    ok = checkEnrollReply(
      { certificate: reply.certificate, caCertificate: reply.caCertificate },
      { name: o.name, role: o.role, keyPem: made.keyPem, caFingerprint: caFingerprintOf(o.caPem) },
    );
  } catch (e) {
    if (!isDepotsyncError(e)) throw e;
    throw new DepotsyncError(e.code, `certificate renewal of ${o.role} ${o.name}: ${e.message}`, {
      cause: e,
      hint: 'the current certificate stays in use; check the master URL',
    });
  }
  await installCredentials(o.files, { keyPem: made.keyPem, certPem: ok.certPem, csrPem: made.csrPem });
  return {
    serial: certificateInfo(ok.certPem).serial,
    notAfter: ok.notAfter,
    keyPem: made.keyPem,
    certPem: ok.certPem,
  };
}

/** The master refusing the renewal (blocked, revoked, expired) becomes one clear message. */
function explainRenew(e: unknown, o: RenewOptions): unknown {
  if (!(e instanceof HttpError) || (e.status !== 401 && e.status !== 403)) return e;
  const why = e.serverCode ?? (e.status === 401 ? 'unauthorized' : 'forbidden');
  const hint =
    why === 'revoked'
      ? `the master operator revoked this ${o.role}; enroll it again`
      : why === 'blocked'
        ? `the master operator blocked this ${o.role}; ask them to approve it again`
        : why === 'expired'
          ? `the certificate expired before it was renewed; enroll this ${o.role} again`
          : 'ask the master operator';
  return new DepotsyncError(
    e.status === 401 ? 'unauthorized' : 'forbidden',
    `certificate renewal of ${o.role} ${o.name} refused by ${o.master.baseUrl.origin}: ${why} (${e.message})`,
    { hint, cause: e },
  );
}
