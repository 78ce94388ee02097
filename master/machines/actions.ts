import { DepotsyncError } from '../../src/errors.js';
import { certificateInfo } from '../../src/pki/cert-info.js';
import { issueMachineCertificate } from '../../src/pki/ca.js';
import { recordAudit } from '../db/audit.js';
import { approve, block, byName, revoke, type Machine } from '../db/machines.js';
import type { MasterContext } from '../context.js';
import { publishRevocationList, publishRevocationListSync } from '../revocations.js';

/**
 * Operator actions on machines, shared by the CLI and the admin API so both do exactly the same
 * thing: approve (issuing the certificate from the stored CSR; an unblocked machine leaves the signed
 * revocation list), block and revoke (both re-sign the list, which the event streams announce, so every
 * depot refuses the machine within seconds). Renewal is renew.ts.
 */
export interface Actor {
  actor: string;
  address?: string;
}

/** Issue a certificate for `machine` from its stored CSR (the master's names are reserved). */
export function issueFromCsr(
  ctx: MasterContext,
  machine: Machine,
): { pem: string; serial: string; notAfter: Date } {
  if (!machine.csrPem)
    throw new DepotsyncError('conflict', `machine ${machine.name} has no certificate request on record`);
  const pem = issueMachineCertificate(ctx.ca, machine.csrPem, {
    machineName: machine.name,
    role: machine.role,
    validDays: ctx.config.certificateValidDays,
    reservedNames: reservedServerNames(ctx.config.hosts),
  });
  const info = certificateInfo(pem);
  return { pem, serial: info.serial, notAfter: info.notAfter };
}

/**
 * The master's own host names, which no depot certificate may carry (a depot holding a certificate for
 * the master's name could intercept operator tokens sent to the master). Loopback names are exempt:
 * every process on one machine (the demo, the tests) shares them, and a loopback listener is reachable
 * only from that machine.
 */
export function reservedServerNames(hosts: readonly string[]): string[] {
  return hosts.filter(
    (h) => !['localhost', '127.0.0.1', '::1'].includes(h.toLowerCase()) && !h.startsWith('127.'),
  );
}

export async function approveMachine(ctx: MasterContext, name: string, who: Actor): Promise<Machine> {
  const machine = await mustExist(ctx, name);
  if (machine.state === 'revoked') {
    throw new DepotsyncError('conflict', `machine ${name} is revoked and cannot be approved again`, {
      hint: 'it must enroll again under a new request after an operator removes the old record',
    });
  }
  const needsCert = !machine.certPem || machine.state === 'pending';
  const certificate = needsCert ? issueFromCsr(ctx, machine) : undefined;
  const out = await approve(ctx.db, name, { by: who.actor, ...(certificate ? { certificate } : {}) });
  await recordAudit(ctx.db, {
    actor: who.actor,
    action: 'machine.approve',
    target: name,
    detail: { serial: out.certSerial },
    ...(who.address ? { address: who.address } : {}),
  });
  // Unblocked: its certificate leaves the signed list, which depots hear about within seconds.
  if (machine.state === 'blocked') await publishRevocationListSync(ctx);
  return out;
}

export async function blockMachine(ctx: MasterContext, name: string, who: Actor): Promise<Machine> {
  await mustExist(ctx, name);
  const out = await block(ctx.db, name, { by: who.actor });
  await recordAudit(ctx.db, {
    actor: who.actor,
    action: 'machine.block',
    target: name,
    ...(who.address ? { address: who.address } : {}),
  });
  // Blocked machines go on the signed list too, so depots refuse them as well.
  await publishRevocationList(ctx);
  return out;
}

export async function revokeMachine(
  ctx: MasterContext,
  name: string,
  who: Actor,
): Promise<{ machine: Machine; revokedSerials: string[] }> {
  await mustExist(ctx, name);
  const out = await revoke(ctx.db, name, { by: who.actor });
  await recordAudit(ctx.db, {
    actor: who.actor,
    action: 'machine.revoke',
    target: name,
    detail: { serials: out.revokedSerials },
    ...(who.address ? { address: who.address } : {}),
  });
  await publishRevocationList(ctx);
  return out;
}

async function mustExist(ctx: MasterContext, name: string): Promise<Machine> {
  const m = await byName(ctx.db, name);
  if (!m)
    throw new DepotsyncError('not-found', `no machine named ${JSON.stringify(name)}`, {
      hint: 'list machines with: depotsync status --dir M',
    });
  return m;
}
