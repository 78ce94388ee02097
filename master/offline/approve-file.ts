import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { transaction } from '../db/database.js';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { parseCsr } from '../../src/pki/csr.js';
import { BUNDLE_FORMAT_VERSION, BUNDLE_TYPE } from '../../src/wire/bundle.js';
import {
  decodeEnrollRequest,
  MAX_ENROLL_REQUEST_BYTES,
  type EnrollRequestFile,
} from '../../src/wire/offline-files.js';
import type { MasterContext } from '../context.js';
import { recordAudit } from '../db/audit.js';
import { currentGeneration, getMetadataFile, latestMetadata, rootVersions } from '../db/catalog.js';
import { byName, requestEnrollment, type Machine } from '../db/machines.js';
import { approveMachine, reservedServerNames } from '../machines/actions.js';
import { writeBundle, type ByteSection } from './writer.js';

export interface ApproveFileResult {
  name: string;
  file: string;
  bytes: number;
  serial: string;
  notAfter: string;
}

/**
 * Checks that need no database: proof of possession (CSR signature), name and
 * role, none of the master's names.
 */
async function checkRequest(ctx: MasterContext, req: EnrollRequestFile, what: string): Promise<void> {
  const root = await getMetadataFile(ctx.db, '1.root.json');
  if (!root) throw new DepotsyncError('corrupt', 'master database has no 1.root.json');
  const mine = createHash('sha256').update(root.bytes).digest();
  // Threat: a request made for another master (its operator would approve a stranger's depot here).
  if (!timingSafeEqual(mine, Buffer.from(req.rootFingerprint, 'hex'))) {
    throw new DepotsyncError(
      'forbidden',
      `${what}: made for the master whose root fingerprint is ${req.rootFingerprint}, not this one (${mine.toString('hex')})`,
      {
        hint: 'carry the request to the master whose fingerprint the depot pinned',
      },
    );
  }
  const csr = parseCsr(req.csr, { what: `${what}: CSR` });
  if (csr.commonName !== req.name)
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: the CSR's common name is ${JSON.stringify(csr.commonName)}, not ${req.name}`,
    );
  if (csr.role !== null && csr.role !== 'depot')
    throw new DepotsyncError('bad-certificate', `${what}: the CSR asks for role ${csr.role}, not depot`);
  const reserved = new Set(reservedServerNames(ctx.config.hosts).map((h) => h.toLowerCase()));
  const taken = [...csr.dnsNames, ...csr.ipAddresses].find((n) => reserved.has(n.toLowerCase()));
  if (taken !== undefined)
    throw new DepotsyncError(
      'bad-certificate',
      `${what}: the CSR asks for the master's own server name ${taken}`,
    );
}

/**
 * `master approve --request FILE --out FILE`: an air-gapped depot's request file in;
 * the operator carrying it is the approval. Records the request as any enrollment, approves it (the
 * certificate is issued from the CSR), and writes the reply: a bundle of purpose 'enrollment', bound
 * to the depot's name and signed with the timestamp key, carrying the certificate, the CA certificate
 * and the root versions after 1 (so the depot can check the signature after key rotations).
 * Approving the same request again writes the same certificate again.
 */
export async function approveRequestFile(
  ctx: MasterContext,
  o: { request: string; out: string; actor?: string; validMs?: number; now?: () => Date },
): Promise<ApproveFileResult> {
  const what = `enrollment request ${o.request}`;
  let raw: Buffer;
  try {
    raw = await readFile(o.request);
  } catch (e) {
    throw fromSystemError(e, what);
  }
  if (raw.length > MAX_ENROLL_REQUEST_BYTES)
    throw new DepotsyncError('too-large', `${what}: ${raw.length} bytes, above ${MAX_ENROLL_REQUEST_BYTES}`);
  const req = decodeEnrollRequest(raw, what);
  await checkRequest(ctx, req, what);
  const actor = o.actor ?? 'cli';
  const machine: Machine = await transaction(ctx.db, async () => {
    const existing = await byName(ctx.db, req.name);
    if (existing?.state === 'approved' && existing.csrPem === req.csr && existing.certPem) return existing;
    await requestEnrollment(ctx.db, { name: req.name, role: 'depot', csrPem: req.csr });
    await recordAudit(ctx.db, {
      actor: `machine:${req.name}`,
      action: 'machine.enroll',
      target: req.name,
      detail: { role: 'depot', offline: true },
    });
    return await approveMachine(ctx, req.name, { actor });
  });
  if (!machine.certPem || !machine.certSerial)
    throw new DepotsyncError('internal', `machine ${req.name} is approved without a certificate`);

  const roots = await rootVersions(ctx.db);
  const sections: ByteSection[] = [];
  for (const v of roots.filter((r) => r > 1)) {
    const f = await getMetadataFile(ctx.db, `${v}.root.json`);
    if (!f) throw new DepotsyncError('corrupt', `master database lacks ${v}.root.json`);
    sections.push({ kind: 'metadata' as const, name: f.name, bytes: f.bytes });
  }
  sections.push({ kind: 'certificate', name: 'certificate.pem', bytes: Buffer.from(machine.certPem) });
  sections.push({ kind: 'ca-certificate', name: 'ca-certificate.pem', bytes: Buffer.from(ctx.ca.certPem) });
  const issued = (o.now ?? (() => new Date()))();
  const generation = await currentGeneration(ctx.db);
  const bytes = await writeBundle({
    out: o.out,
    head: {
      _type: BUNDLE_TYPE,
      formatVersion: BUNDLE_FORMAT_VERSION,
      purpose: 'enrollment',
      depot: req.name,
      fromGeneration: 0,
      toGeneration: generation,
      timestampVersion: (await latestMetadata(ctx.db, 'timestamp'))?.version ?? 1,
      rootVersion: roots[roots.length - 1] ?? 1,
      issuedAt: issued.toISOString(),
      validUntil: new Date(issued.getTime() + (o.validMs ?? 30 * 86_400_000)).toISOString(),
    },
    byteSections: sections,
    chunks: [],
    signers: [ctx.signers.timestamp],
  });
  await recordAudit(ctx.db, {
    actor,
    action: 'offline.approve',
    target: req.name,
    detail: { serial: machine.certSerial, file: o.out },
  });
  return {
    name: req.name,
    file: o.out,
    bytes,
    serial: machine.certSerial,
    notAfter: machine.certNotAfter ?? '',
  };
}
