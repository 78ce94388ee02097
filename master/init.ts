import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { loadOrCreateKey, totpKeyPath } from './admin/totp-secrets.js';
import { isIP } from 'node:net';
import { DepotsyncError } from '../src/errors.js';
import { writeFileAtomic } from '../src/fs/atomic-write.js';
import type { Logger } from '../src/log.js';
import { createCa, issueServerCertificate, loadCa } from '../src/pki/ca.js';
import { ChunkStore } from '../src/store/chunk-store.js';
import { TufRepository } from '../src/tuf/repository.js';
import { DEFAULT_MASTER_CONFIG, validateMasterConfig, type MasterConfig } from './config.js';
import { commitGeneration } from './db/commit.js';
import { openMasterDatabase } from './db/database.js';
import { recordAudit } from './db/audit.js';
import { createRoleKeys } from './keys.js';
import { masterLayout } from './layout.js';
import { expiryOf } from './repository.js';
import { publishRevocationList } from './revocations.js';

export interface InitResult {
  dir: string;
  fingerprint: string;
  rootFile: string;
}

/**
 * `depotsync master init`: role keys (0600), root v1 and the empty catalog (generation 1), the internal
 * CA and the master's server certificate, the database, and master.json. Prints the root fingerprint:
 * the SHA-256 of the exact bytes of 1.root.json, which depots and agents pin.
 */
export async function initMaster(dir: string, opts: { name?: string; hosts?: string[]; log: Logger; config?: Partial<MasterConfig> }): Promise<InitResult> {
  const layout = masterLayout(dir);
  if (existsSync(layout.config)) {
    throw new DepotsyncError('already-exists', `${layout.dir} already holds a master (master.json exists)`, {
      hint: 'choose an empty directory; initialising again would replace the keys every depot and agent trusts',
    });
  }
  if (existsSync(layout.dir) && readdirSync(layout.dir).length > 0) {
    throw new DepotsyncError('already-exists', `${layout.dir} is not empty`, { hint: 'choose a new or empty directory for the master' });
  }
  const config = validateMasterConfig({
    ...DEFAULT_MASTER_CONFIG,
    ...opts.config,
    ...(opts.name ? { name: opts.name } : {}),
    ...(opts.hosts ? { hosts: opts.hosts } : {}),
  });
  for (const d of [layout.dir, layout.keysDir, `${layout.dir}/ca`, `${layout.dir}/tls`, layout.dropbox, layout.dropboxRejected, layout.backups]) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
  }

  // TUF: root key (may go offline later) and the online timestamp, snapshot and targets keys.
  const keys = await createRoleKeys(layout);
  const { repository, files } = TufRepository.create({
    root: { keys: [keys.root.publicKey], threshold: 1, signers: [keys.root.signer] },
    online: { timestamp: keys.timestamp.signer, snapshot: keys.snapshot.signer, targets: keys.targets.signer },
    options: { binCount: config.bins as 16 | 256 | 4096, expiryMs: expiryOf(config) },
  });

  // The internal CA and the master's own server certificate.
  const caMaterial = createCa({ commonName: `${config.name} depotsync CA` });
  await writeFileAtomic(layout.caKey, caMaterial.keyPem, { mode: 0o600 });
  await writeFileAtomic(layout.caCert, caMaterial.certPem);
  const ca = loadCa(caMaterial.keyPem, caMaterial.certPem);
  const server = issueServerCertificate(ca, {
    commonName: config.name,
    dnsNames: config.hosts.filter((h) => !isIP(h)),
    ipAddresses: config.hosts.filter((h) => isIP(h)),
  });
  await writeFileAtomic(layout.serverKey, server.keyPem, { mode: 0o600 });
  await writeFileAtomic(layout.serverCert, server.certPem);
  // The key that encrypts operators' TOTP secrets in the database (kept out of it, with the other keys).
  loadOrCreateKey(totpKeyPath(layout.database));

  // Database and store; generation 1 with the initial metadata, in one transaction.
  const db = openMasterDatabase(layout.database, { logger: opts.log });
  try {
    const root = files.find((f) => f.role === 'root');
    if (!root) throw new DepotsyncError('internal', 'master init: no root metadata was produced');
    commitGeneration(db, {
      generation: 1,
      createdBy: 'master init',
      note: 'empty catalog',
      timestampVersion: 1,
      bins: files.filter((f) => f.role.startsWith('bin-')).map((f) => ({ name: f.role, version: f.version })),
      metadata: files.map((f) => ({ role: f.role, version: f.version, bytes: f.bytes })),
    });
    recordAudit(db, { actor: 'cli', action: 'master.init', target: config.name, detail: { rootVersion: repository.rootVersion } });
    await writeFileAtomic(`${layout.dir}/1.root.json`, root.bytes);
    const store = ChunkStore.open(layout.storeDir, { logger: opts.log });
    await store.close();
    await publishRevocationList({ layout, config, ca, db, log: opts.log });
    await writeFileAtomic(layout.config, `${JSON.stringify(config, null, 2)}\n`);
    const fingerprint = createHash('sha256').update(root.bytes).digest('hex');
    return { dir: layout.dir, fingerprint, rootFile: `${layout.dir}/1.root.json` };
  } finally {
    db.close();
  }
}
