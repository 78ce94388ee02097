import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { writeFileAtomic } from '../../src/fs/atomic-write.js';
import type { Logger } from '../../src/log.js';
import { createMachineKeyAndCsr } from '../../src/pki/csr.js';
import { MACHINE_NAME } from '../../src/pki/names.js';
import {
  checkRootFingerprint,
  MemorySource,
  TufClient,
  DEFAULT_CLIENT_LIMITS,
} from '../../src/tuf/client.js';
import {
  encodeEnrollRequest,
  ENROLL_REQUEST_TYPE,
  OFFLINE_FILE_FORMAT,
} from '../../src/wire/offline-files.js';
import { newDepotConfig, saveDepotConfig, type DepotConfig } from '../config.js';
import { DepotDb } from '../db/depot-db.js';
import { DbTrustedStore } from '../db/trusted-store.js';
import { installCertificate } from '../enroll/enroll.js';
import { depotLayout, type DepotLayout } from '../layout.js';
import type { BundleFile } from './bundle-file.js';
import { OFFLINE_MASTER_URL } from './offline-mode.js';
import { verifyBundleSignature } from './verify.js';

export interface InitOfflineOptions {
  dir: string;
  fingerprint: string;
  /** 1.root.json, carried from the master; must hash to `fingerprint`. */
  rootFile: string;
  name: string;
  listen?: string | undefined;
  hosts?: string[] | undefined;
  log: Logger;
}

export interface InitOfflineResult {
  dir: string;
  name: string;
  state: 'pending';
  request: string;
  rootFingerprint: string;
  rootVersion: number;
}

export function csrPath(layout: DepotLayout): string {
  return join(layout.tlsDir, 'depot.csr');
}

/**
 * `depot init --offline`: check 1.root.json against the pinned fingerprint and trust
 * it, write depot.json (no master URL: see offline-mode.ts), make the machine key (0600, never leaves
 * D/tls) and CSR, and write the enrollment request into D/outbox/ for the operator to carry to the
 * master. A failure removes what it created.
 */
export async function initOfflineDepot(o: InitOfflineOptions): Promise<InitOfflineResult> {
  const layout = depotLayout(o.dir);
  const fingerprint = o.fingerprint.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(fingerprint))
    throw new DepotsyncError(
      'usage',
      `depot init: --fingerprint must be 64 hex digits (SHA-256 of 1.root.json), got ${JSON.stringify(o.fingerprint)}`,
    );
  if (!MACHINE_NAME.test(o.name))
    throw new DepotsyncError(
      'usage',
      `depot init: --name ${JSON.stringify(o.name)} must be 1-64 letters, digits, ".", "_" or "-"`,
    );
  if (existsSync(layout.config))
    throw new DepotsyncError(
      'already-exists',
      `depot init: ${layout.config} exists; this directory is already a depot`,
      { hint: 'use another --dir' },
    );
  let root: Buffer;
  try {
    root = readFileSync(o.rootFile);
  } catch (e) {
    throw fromSystemError(e, `root file ${o.rootFile}`);
  }
  if (root.length > DEFAULT_CLIENT_LIMITS.rootMaxBytes)
    throw new DepotsyncError(
      'too-large',
      `root file ${o.rootFile}: ${root.length} bytes, above ${DEFAULT_CLIENT_LIMITS.rootMaxBytes}`,
    );
  // Wrong-root attack: the file must be the exact 1.root.json the pinned fingerprint names.
  checkRootFingerprint(root, fingerprint, o.rootFile);
  const created = !existsSync(layout.dir);
  const hosts = o.hosts?.length ? o.hosts : ['localhost', '127.0.0.1'];
  try {
    for (const d of [layout.dir, layout.inbox, layout.outbox]) mkdirSync(d, { recursive: true });
    mkdirSync(layout.tlsDir, { recursive: true, mode: 0o700 });
    const db = DepotDb.open(layout.database, o.log);
    let rootVersion: number;
    try {
      const client = await TufClient.open({
        fingerprint,
        initialRoot: root,
        source: new MemorySource([], 'depot init'),
        store: new DbTrustedStore(db),
        logger: o.log,
      });
      rootVersion = client.rootVersion;
    } finally {
      db.close();
    }
    const config: DepotConfig = newDepotConfig({
      name: o.name,
      masterUrl: OFFLINE_MASTER_URL,
      upstreamUrl: OFFLINE_MASTER_URL,
      fingerprint,
      listen: o.listen ?? '0.0.0.0:8443',
      hosts,
    });
    await saveDepotConfig(layout.config, config);
    const made = createMachineKeyAndCsr({
      machineName: o.name,
      role: 'depot',
      dnsNames: hosts.filter((h) => isIP(h) === 0),
      ipAddresses: hosts.filter((h) => isIP(h) !== 0),
    });
    await writeFileAtomic(layout.key, made.keyPem, { mode: 0o600 });
    await writeFileAtomic(csrPath(layout), made.csrPem);
    const request = join(layout.outbox, `enroll-request-${o.name}.json`);
    await writeFileAtomic(
      request,
      encodeEnrollRequest({
        _type: ENROLL_REQUEST_TYPE,
        formatVersion: OFFLINE_FILE_FORMAT,
        name: o.name,
        role: 'depot',
        csr: made.csrPem,
        rootFingerprint: fingerprint,
        createdAt: new Date().toISOString(),
      }),
    );
    o.log.info(
      { request },
      'offline enrollment request written; carry it to the master (depotsync master approve --request)',
    );
    return {
      dir: layout.dir,
      name: o.name,
      state: 'pending',
      request,
      rootFingerprint: fingerprint,
      rootVersion,
    };
  } catch (e) {
    if (created) rmSync(layout.dir, { recursive: true, force: true });
    else
      for (const p of [
        layout.config,
        layout.database,
        `${layout.database}-wal`,
        `${layout.database}-shm`,
        layout.key,
        csrPath(layout),
      ])
        rmSync(p, { force: true });
    throw e;
  }
}

/**
 * `depot import` of an enrollment reply: the header signed by the master's timestamp key (checked
 * from this depot's pinned root), bound to this depot's name by the caller, then the same checks as
 * an online enrollment (installCertificate: the certificate is for this depot's own key, name and
 * role, issued by the CA in the reply). Threat: a reply for another depot, or from another master.
 */
export async function importEnrollmentReply(
  layout: DepotLayout,
  config: DepotConfig,
  file: BundleFile,
  log: Logger,
): Promise<{ notAfter: string; caFingerprint: string }> {
  const db = DepotDb.open(layout.database, log);
  let root: Buffer | undefined;
  try {
    root = db.trustedLoad('root');
  } finally {
    db.close();
  }
  if (!root)
    throw new DepotsyncError('not-found', `depot ${layout.dir}: no trusted root`, {
      hint: 'run depotsync depot init --offline first',
    });
  await verifyBundleSignature(file, root);
  const cert = file.section('certificate', 'certificate.pem');
  const ca = file.section('ca-certificate', 'ca-certificate.pem');
  if (!cert || !ca)
    throw new DepotsyncError(
      'bad-input',
      `${file.what}: an enrollment reply without certificate and CA certificate`,
    );
  const certificate = (await file.readSection(cert)).toString('utf8');
  const caCertificate = (await file.readSection(ca)).toString('utf8');
  if (!existsSync(layout.key))
    throw new DepotsyncError('not-found', `depot ${layout.dir}: no machine key (${layout.key})`, {
      hint: 'this depot did not make the request; run depot init --offline here',
    });
  const out = await installCertificate(
    layout,
    { state: 'approved', request: 'offline', name: config.name, certificate, caCertificate },
    { name: config.name, keyPem: readFileSync(layout.key, 'utf8') },
  );
  log.info(
    { name: config.name, notAfter: out.notAfter },
    'offline enrollment complete; certificate installed',
  );
  return out;
}
