import { X509Certificate, createHash } from 'node:crypto';
import { transaction } from '../db/database.js';
import { DepotsyncError } from '../../src/errors.js';
import { parseCsr } from '../../src/pki/csr.js';
import type { MachineRef } from '../../src/serve/env.js';
import type { RenewReply, RenewState } from '../../src/wire/renew.js';
import type { MasterContext } from '../context.js';
import { recordAudit } from '../db/audit.js';
import { byName, mustGet, requestRenewal, setCertificate, type Machine } from '../db/machines.js';
import { issueFromCsr, type Actor } from './actions.js';

/**
 * Certificate renewal on the master. Two halves:
 *  - an operator marks a machine (`depotsync master renew MACHINE`): `renew_requested` is set and the
 *    machine learns of it at its next contact (`GET /v1/renew`);
 *  - the machine renews over mutual TLS (`POST /v1/renew`) with a CSR for a NEW key: checked, signed,
 *    recorded in the certificate history, audit-logged, the mark cleared. The old certificate is NOT
 *    revoked; it stays valid until it expires (a machine that crashed mid-install keeps working).
 * Blocked, revoked and expired machines never get here: the mutual-TLS gate refuses them with the reason.
 */

/** What `GET /v1/renew` answers: the newest certificate on record and the operator's mark. */
export async function renewalState(ctx: MasterContext, who: MachineRef): Promise<RenewState> {
  const m = await mustGet(ctx.db, who.name);
  return {
    machine: m.name,
    serial: m.certSerial ?? who.serial,
    notAfter: m.certNotAfter ?? '',
    renewRequested: m.renewRequested,
  };
}

/**
 * `depotsync master renew MACHINE`: mark the machine so that it renews at its next contact, whatever its
 * certificate's age, with a new key, over mutual TLS. Nothing is issued here: the master never holds a
 * machine's private key, so only the machine can make the CSR for its new one.
 */
export async function renewMachine(ctx: MasterContext, name: string, who: Actor): Promise<Machine> {
  const machine = await byName(ctx.db, name);
  if (!machine)
    throw new DepotsyncError('not-found', `no machine named ${JSON.stringify(name)}`, {
      hint: 'list machines with: depotsync status --dir M',
    });
  if (machine.state !== 'approved') {
    throw new DepotsyncError(
      'forbidden',
      `machine ${name} is ${machine.state}; only an approved machine renews its certificate`,
      {
        hint:
          machine.state === 'blocked'
            ? 'approve it again first'
            : machine.state === 'pending'
              ? 'approve it first'
              : 'a revoked machine must enroll again',
      },
    );
  }
  return transaction(ctx.db, async () => {
    const out = await requestRenewal(ctx.db, name, machine.csrPem);
    await recordAudit(ctx.db, {
      actor: who.actor,
      action: 'machine.renew-request',
      target: name,
      detail: { serial: out.certSerial ?? null },
      ...(who.address ? { address: who.address } : {}),
    });
    return out;
  });
}

/**
 * Sign a renewal CSR for the machine the client certificate names. The CSR must be signed by its key
 * (proof of possession), name this machine and role, and carry a key other than the current one (a
 * renewal that keeps a possibly exposed key would renew the exposure too).
 */
export async function renewFromCsr(
  ctx: MasterContext,
  who: MachineRef,
  csrPem: string,
  address?: string,
): Promise<RenewReply> {
  const machine = await mustGet(ctx.db, who.name);
  if (machine.state !== 'approved') {
    throw new DepotsyncError(
      'forbidden',
      `machine ${who.name} is ${machine.state} and cannot renew its certificate`,
    );
  }
  const what = `renewal CSR of ${machine.role} ${machine.name}`;
  const csr = parseCsr(csrPem, { what });
  if (csr.commonName !== machine.name || (csr.role !== null && csr.role !== machine.role)) {
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: it is for ${csr.commonName} (${csr.role ?? 'no role'}), not for the machine whose certificate made the request`,
      {
        hint: 'a machine renews only its own certificate',
      },
    );
  }
  if (machine.certPem && spkiFingerprint(machine.certPem) === csr.fingerprint) {
    throw new DepotsyncError('bad-certificate', `${what}: it reuses the key of the current certificate`, {
      hint: 'make a new key for the renewal',
    });
  }
  const issued = issueFromCsr(ctx, { ...machine, csrPem });
  const out = await transaction(ctx.db, async () => {
    await requestRenewal(ctx.db, machine.name, csrPem); // keeps the CSR on record
    const m = await setCertificate(ctx.db, machine.name, issued); // history row; clears the operator's mark
    await recordAudit(ctx.db, {
      actor: `machine:${machine.name}`,
      action: 'machine.renew',
      target: machine.name,
      detail: { serial: issued.serial, previous: who.serial, requested: machine.renewRequested },
      ...(address ? { address } : {}),
    });
    return m;
  });
  return {
    machine: out.name,
    serial: issued.serial,
    notAfter: issued.notAfter.toISOString(),
    certificate: issued.pem,
    caCertificate: ctx.ca.certPem,
  };
}

function spkiFingerprint(certPem: string): string {
  return createHash('sha256')
    .update(new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}
