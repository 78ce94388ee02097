import { verify, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { normalizeSerial } from '../../src/pki/cert-info.js';
import { decodeStatusFile, MAX_STATUS_FILE_BYTES } from '../../src/wire/offline-files.js';
import type { MasterContext } from '../context.js';
import { recordAudit } from '../db/audit.js';
import { byName, bySerial } from '../db/machines.js';
import { recordDepotStatus } from '../db/status.js';

export interface ImportStatusResult {
  machine: string;
  sequence: number;
  /** 'stale': a replayed or older report, ignored (newer status is kept). */
  outcome: 'recorded' | 'stale';
  servedGeneration: number;
  validUntil: string | null;
  reportedAt: string;
}

/**
 * `master import-status --dir M FILE`: a depot's outbox file. The report is filed for
 * the machine whose certificate ON RECORD verifies the signature (never a name the file merely
 * claims), exactly like an online report over mutual TLS; unknown, pending, blocked and revoked
 * machines are refused, and a report not newer than the last one (its sequence) is ignored.
 */
export async function importStatusFile(
  ctx: MasterContext,
  path: string,
  o: { actor?: string } = {},
): Promise<ImportStatusResult> {
  const what = `status file ${path}`;
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fromSystemError(e, what);
  }
  if (bytes.length > MAX_STATUS_FILE_BYTES)
    throw new DepotsyncError('too-large', `${what}: ${bytes.length} bytes, above ${MAX_STATUS_FILE_BYTES}`);
  const file = decodeStatusFile(bytes, what);
  const { machine: name, certSerial, report } = file.signed;
  const machine = await byName(ctx.db, name);
  if (!machine)
    throw new DepotsyncError(
      'unauthorized',
      `${what}: signed as machine ${name}, which this master does not know`,
      { hint: 'the depot enrolls first (master approve --request)' },
    );
  if (machine.role !== 'depot')
    throw new DepotsyncError('forbidden', `${what}: ${name} is not a depot; only depots report status`);
  // Threat: a revoked or blocked depot (a stolen disk, a decommissioned site) still speaking for itself.
  const cert = (await bySerial(ctx.db, certSerial))?.certificate;
  if (machine.state !== 'approved' || cert?.revokedAt) {
    throw new DepotsyncError(
      'forbidden',
      `${what}: machine ${name} is ${cert?.revokedAt ? 'revoked' : machine.state}; its report is refused`,
    );
  }
  if (!machine.certPem || machine.certSerial !== normalizeSerial(certSerial)) {
    throw new DepotsyncError(
      'bad-signature',
      `${what}: signed with certificate ${certSerial}, but ${name}'s certificate on record is ${machine.certSerial ?? 'none'}`,
      {
        hint: 'the depot renewed its certificate since; have it write a new status file',
      },
    );
  }
  // Threat: a report forged or altered in transit, or signed by another machine's key.
  const ok = verify(
    'sha256',
    file.signedBytes,
    new X509Certificate(machine.certPem).publicKey,
    file.signature,
  );
  if (!ok) {
    throw new DepotsyncError(
      'bad-signature',
      `${what}: the signature does not verify with ${name}'s certificate on record`,
      {
        hint: 'the file was altered, or another machine signed it; it is not recorded',
      },
    );
  }
  const outcome = await recordDepotStatus(ctx.db, name, report, { raw: file.rawReport, address: 'offline' });
  if (outcome === 'recorded')
    await recordAudit(ctx.db, {
      actor: o.actor ?? 'cli',
      action: 'offline.status',
      target: name,
      detail: { sequence: report.sequence, served: report.servedGeneration },
    });
  return {
    machine: name,
    sequence: report.sequence,
    outcome,
    servedGeneration: report.servedGeneration,
    validUntil: report.validUntil ?? null,
    reportedAt: report.reportedAt,
  };
}
